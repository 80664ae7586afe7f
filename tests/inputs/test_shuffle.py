"""``--limit N --shuffle`` takes N rows drawn at random (seeded), and the run says which."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from support.small_runs import BAILBENCH

from bailclio.cli import main
from bailclio.ingest import read_input, shuffled_selection


def test_limit_with_shuffle_covers_every_bailbench_category() -> None:
    categories = pl.read_csv(BAILBENCH)["category"]
    first = read_input(BAILBENCH, limit=400).frame["category"]
    selection = shuffled_selection(BAILBENCH, 400, seed=42)
    drawn = read_input(BAILBENCH, select=selection.indices).frame
    assert drawn.height == 400
    assert drawn["category"].n_unique() == categories.n_unique()
    assert first.n_unique() < categories.n_unique()  # the first 400 rows are not a sample
    assert drawn["source_line"].to_list() == [i + 2 for i in selection.indices.tolist()]


def test_the_same_seed_takes_the_same_rows_and_another_seed_others() -> None:
    a = shuffled_selection(BAILBENCH, 50, seed=7).indices.tolist()
    assert a == shuffled_selection(BAILBENCH, 50, seed=7).indices.tolist()
    assert a != shuffled_selection(BAILBENCH, 50, seed=8).indices.tolist()
    assert a == sorted(set(a)) and len(a) == 50


def test_a_shuffled_run_records_which_rows_it_took(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    code = main(["run", str(BAILBENCH), "--out", str(out), "--limit", "60", "--shuffle", "--seed", "5"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    sel = manifest["input"]["selection"]
    assert sel["shuffle"] is True and sel["seed"] == 5 and sel["taken"] == 60
    assert sel["records_in_input"] == pl.read_csv(BAILBENCH).height
    assert sel["record_indices"] == shuffled_selection(BAILBENCH, 60, seed=5).indices.tolist()
    lines = pl.read_parquet(out / "conversations.parquet")["source_line"].to_list()
    assert sorted(lines) == [i + 2 for i in sel["record_indices"]]
    assert "drawn at random" in capsys.readouterr().out
