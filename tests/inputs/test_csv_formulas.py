"""CSV exports never carry a cell a spreadsheet would run as a formula; Parquet and JSONL keep the
exact text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest
from support.small_runs import tiny_run

from bailclio.cli import main
from bailclio.rundir import load_run
from bailclio.taxonomy.assign_output import write_output

HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1)", "-2+3", '@HYPERLINK("x")', "\tTAB", "\rCR", "plain", "a=b"]


def formula_cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            cell for row in csv.reader(fh) for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")
        ]


@pytest.fixture
def hostile_run(tmp_path: Path) -> Path:
    run = tiny_run(tmp_path / "r", n=len(HOSTILE))
    conv = pl.read_parquet(run / "conversations.parquet").with_columns(pl.Series("text", HOSTILE))
    conv.write_parquet(run / "conversations.parquet")
    tax = json.loads((run / "taxonomy.json").read_text())
    tax["nodes"][0]["name"] = "=1+1"  # a node name is exported too
    (run / "taxonomy.json").write_text(json.dumps(tax))
    return run


@pytest.mark.parametrize("fmt", ["csv", "bailbench"])
def test_csv_exports_neutralise_formula_cells(hostile_run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"x-{fmt}.csv"
    assert main(["export", str(hostile_run), "--format", fmt, "--out", str(out)]) == 0
    assert formula_cells(out) == []
    table = pl.read_csv(out)
    texts = table["content" if fmt == "bailbench" else "text"].to_list()
    assert texts == [f"'{t}" if t[0] in "=+-@\t\r" else t for t in HOSTILE]
    names = set(table["category" if fmt == "bailbench" else "top_name"].to_list())
    assert "'=1+1" in names


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_exports_keep_the_exact_text(hostile_run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"x.{fmt}"
    assert main(["export", str(hostile_run), "--format", fmt, "--out", str(out)]) == 0
    table = pl.read_ndjson(out) if fmt == "jsonl" else pl.read_parquet(out)
    assert table["text"].to_list() == HOSTILE


def test_assign_csv_output_neutralises_formula_cells(hostile_run: Path, tmp_path: Path) -> None:
    run = load_run(hostile_run)
    frame = run.conversations.join(run.assignments, on="conversation_id")
    write_output(frame, tmp_path / "a.csv", run, "model")
    assert formula_cells(tmp_path / "a.csv") == []
    write_output(frame, tmp_path / "a.parquet", run, "model")
    assert pl.read_parquet(tmp_path / "a.parquet")["text"].to_list() == HOSTILE
