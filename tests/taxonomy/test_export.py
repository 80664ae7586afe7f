"""``bailclio export``: BailBench round trip, full tables, levels, curated names, privacy filter."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from support.small_runs import build_runs  # noqa: E402

from bailclio.cli import main
from bailclio.ingest import read_input
from bailclio.rundir import Run, load_run
from bailclio.taxonomy.export import export_frame, last_user_turn
from bailclio.taxonomy.model import Node, Taxonomy

SHARED_BAILBENCH = Path(__file__).resolve().parents[2] / "data" / "bailbench.csv"  # the published file


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def names_at(run, level):
    tax = run.taxonomy
    return [tax.path(lf)[level].name for lf in run.assignments["leaf_id"].to_list()]


def test_bailbench_export_round_trips_through_the_bailbench_readers(runs, tmp_path, capsys):
    out = tmp_path / "bb.csv"
    assert main(["export", str(runs["full"]), "--format", "bailbench", "--out", str(out)]) == 0
    assert "wrote 300 rows" in capsys.readouterr().out
    run = load_run(runs["full"])
    frame = pl.read_csv(out)
    bailbench_header = ["content", "subcategory", "category"]
    if SHARED_BAILBENCH.exists():
        bailbench_header = pl.read_csv(SHARED_BAILBENCH, n_rows=1).columns
    assert frame.columns == bailbench_header == ["content", "subcategory", "category"]
    source = pl.read_csv(runs["full_csv"])
    assert frame["content"].to_list() == source["content"].to_list()  # commas, quotes intact
    assert frame["category"].to_list() == names_at(run, 0)
    assert frame["subcategory"].to_list() == names_at(run, run.taxonomy.depth - 1)
    ing = read_input(out)
    assert ing.rejects == [] and ing.frame.height == 300
    assert ing.frame["content"].to_list() == source["content"].to_list()
    assert ing.frame["category"].to_list() == frame["category"].to_list()
    assert out.read_bytes().decode("utf-8").startswith("content,subcategory,category\n")


def test_level_option_names_that_level_in_subcategory(runs):
    run = load_run(runs["full"])
    frame, _ = export_frame(run, "bailbench", level=1)
    assert frame["subcategory"].to_list() == names_at(run, 1)
    with pytest.raises(Exception, match="level 7 does not exist"):
        export_frame(run, "bailbench", level=7)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_full_tables_carry_every_level_and_the_input_columns(runs, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    assert main(["export", str(runs["full"]), "--format", fmt, "--out", str(out)]) == 0
    frame = {"csv": pl.read_csv, "jsonl": pl.read_ndjson, "parquet": pl.read_parquet}[fmt](out)
    run = load_run(runs["full"])
    depth = run.taxonomy.depth
    per_level = [("top", 0), *[(f"level_{d}", d) for d in range(1, depth - 1)], ("leaf", depth - 1)]
    for stem, _ in per_level:
        assert f"{stem}_id" in frame.columns and f"{stem}_name" in frame.columns
    assert "mid_id" not in frame.columns
    for col in ("is_outlier", "content", "subcategory", "category", "text"):
        assert col in frame.columns
    assert frame["conversation_id"].cast(pl.String).to_list() == run.assignments["conversation_id"].to_list()
    assert frame["leaf_id"].to_list() == run.assignments["leaf_id"].to_list()
    for stem, level in per_level:
        assert frame[f"{stem}_id"].to_list() == [p[level] for p in run.assignments["path"].to_list()]
        assert frame[f"{stem}_name"].to_list() == names_at(run, level)
    assert frame["is_outlier"].to_list() == run.assignments["is_outlier"].to_list()


def test_min_cluster_size_leaves_out_small_nodes_and_reports_them(runs, tmp_path, capsys):
    run = load_run(runs["full"])
    sizes = Counter(run.assignments["leaf_id"].to_list())
    k = sorted(sizes.values())[len(sizes) // 2]  # the median leaf size: some leaves go
    small = {lf for lf, n in sizes.items() if n < k}
    assert small, "the fixture run should have leaves of different sizes"
    expected_rows = 300 - sum(sizes[lf] for lf in small)
    paths = run.assignments["path"].to_list()
    small_nodes = {
        node
        for level in range(run.taxonomy.depth)
        for node, n in Counter(p[level] for p in paths).items()
        if n < k
    }  # a parent smaller than K only holds leaves smaller than K
    out = tmp_path / "bb.csv"
    argv = ["export", str(runs["full"]), "--format", "csv", "--out", str(out), "--min-cluster-size", str(k)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"left out {len(small_nodes)} nodes smaller than {k}" in captured.err
    assert f"{300 - expected_rows} rows" in captured.err
    frame = pl.read_csv(out)
    assert frame.height == expected_rows
    assert not set(frame["leaf_id"].to_list()) & small
    assert set(frame["leaf_id"].to_list()) == set(sizes) - small


def test_export_uses_curated_names(runs, tmp_path):
    curated = tmp_path / "curated"
    shutil.copytree(runs["full"], curated)
    edit = {"op": "rename", "node_id": "T0", "name": "Weapons, curated", "at": "2026-01-01T00:00:00+00:00"}
    (curated / "curation.json").write_text(json.dumps({"format_version": 1, "edits": [edit]}))
    out = tmp_path / "bb.csv"
    assert main(["export", str(curated), "--format", "bailbench", "--out", str(out)]) == 0
    top = load_run(curated, curated=False).assignments["top_id"].to_list()
    categories = pl.read_csv(out)["category"].to_list()
    assert [c for c, t in zip(categories, top, strict=True) if t == "T0"]
    assert all((c == "Weapons, curated") == (t == "T0") for c, t in zip(categories, top, strict=True))


def test_conversation_runs_export_the_last_user_turn():
    turns = [
        [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": 'now, the "real" question'},
            {"role": "assistant", "content": "no"},
        ],
        [{"role": "system", "content": "be nice"}, {"role": "assistant", "content": "only me"}],
    ]
    assert last_user_turn(turns[0]) == 'now, the "real" question'
    assert last_user_turn(turns[1]) == "only me"
    tax = Taxonomy([Node("T0", None, 0, "top"), Node("L0", "T0", 1, "leaf")])
    conv = pl.DataFrame(
        {"conversation_id": ["a", "b"], "text": ["rendered a", "rendered b"], "conversation": turns}
    )
    assign = pl.DataFrame(
        {
            "conversation_id": ["a", "b"],
            "leaf_id": ["L0", "L0"],
            "top_id": ["T0", "T0"],
            "path": [["T0", "L0"], ["T0", "L0"]],
            "is_outlier": [False, False],
            "x": [0.0, 0.0],
            "y": [0.0, 0.0],
        }
    )
    run = Run(Path("conv"), {"input": {"shape": "conversation"}}, conv, assign, tax)
    frame, _ = export_frame(run, "bailbench")
    assert frame.to_dicts() == [
        {"content": 'now, the "real" question', "subcategory": "leaf", "category": "top"},
        {"content": "only me", "subcategory": "leaf", "category": "top"},
    ]
    table, _ = export_frame(run, "csv")
    assert json.loads(table["conversation"][0]) == turns[0]


def test_export_of_a_missing_run_fails_with_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "--format", "csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run directory" in err and len(err.splitlines()) == 1
