"""Loading a run checks that its files agree: a damaged or mismatched run directory is one line
and exit status 2 naming what is wrong, never an endless loop or a wrong report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support.small_runs import tiny_run

from bailclio import rundir
from bailclio.cli import main


def edit_taxonomy(run: Path, change) -> None:
    data = json.loads((run / rundir.TAXONOMY).read_text())
    change({n["id"]: n for n in data["nodes"]}, data)
    (run / rundir.TAXONOMY).write_text(json.dumps(data))


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1
    for word in words:
        assert word in err, err


COMMANDS = [["show"], ["export", "--format", "csv", "--out", "{tmp}/x.csv"], ["eval", "--truth", "category"]]


def argv_for(cmd: list[str], run: Path, tmp: Path) -> list[str]:
    return [cmd[0], str(run), *[a.replace("{tmp}", str(tmp)) for a in cmd[1:]]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_parent_cycle_is_refused_naming_the_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cmd: list[str]
) -> None:
    run = tiny_run(tmp_path / "r")

    def cycle(nodes: dict, _: dict) -> None:
        nodes["T0"]["parent_id"] = "L0"
        nodes["T0"]["level"] = 2

    edit_taxonomy(run, cycle)
    fails(argv_for(cmd, run, tmp_path), capsys, "cycle", "'")


def test_a_self_parent_and_a_dangling_parent_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    edit_taxonomy(run, lambda nodes, _: nodes["T1"].update(parent_id="T1"))
    fails(["show", str(run)], capsys, "'T1'", "cycle")
    edit_taxonomy(run, lambda nodes, _: nodes["T1"].update(parent_id="nowhere"))
    fails(["show", str(run)], capsys, "'T1'", "'nowhere'")


def test_a_duplicate_node_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "r")
    edit_taxonomy(run, lambda _, data: data["nodes"].append(dict(data["nodes"][0])))
    fails(["show", str(run)], capsys, "'T0'", "more than once")


def test_assignments_from_another_input_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    assignments = pl.read_parquet(run / rundir.ASSIGNMENTS)
    assignments.head(2).write_parquet(run / rundir.ASSIGNMENTS)
    fails(["show", str(run)], capsys, "8 rows", "2")
    fails(["eval", str(run), "--truth", "category"], capsys, "do not belong together")


def test_assignments_with_unknown_or_repeated_ids_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    good = pl.read_parquet(run / rundir.ASSIGNMENTS)
    ids = good["conversation_id"].to_list()
    good.with_columns(pl.Series("conversation_id", ["zz", *ids[1:]])).write_parquet(run / rundir.ASSIGNMENTS)
    fails(["show", str(run)], capsys, "'zz'")
    good.with_columns(pl.Series("conversation_id", [ids[1], *ids[1:]])).write_parquet(
        run / rundir.ASSIGNMENTS
    )
    fails(["show", str(run)], capsys, f"'{ids[1]}'", "more than once")


def test_vectors_of_another_size_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "r")
    np.save(run / rundir.EMBEDDINGS, np.zeros((3, 8), dtype=np.float32))
    fails(["show", str(run)], capsys, rundir.EMBEDDINGS, "3 rows")


def test_the_one_assignments_builder_follows_the_taxonomy_and_leaves_unplaced_rows_empty() -> None:
    from bailclio.taxonomy.model import Node, Taxonomy

    tax = Taxonomy(
        [
            Node("T0", None, 0, "a"),
            Node("M0", "T0", 1, "b"),
            Node("L0", "M0", 2, "c"),
            Node("L1", "T0", 1, "d"),  # a leaf above the deepest level
        ]
    )
    table = rundir.assignments_table(
        tax,
        ["x", "y", "z"],
        ["L0", "L1", None],
        is_outlier=[False, True, False],
        x=[0.0, 1.0, 2.0],
        y=[0.0, 1.0, 2.0],
        level_columns=True,
        extra={"note": ["p", "q", "r"]},
    )
    assert table.columns == ["conversation_id", "leaf_id", "top_id", "level_1_id", "path"] + [
        "is_outlier",
        "x",
        "y",
        "note",
    ]
    assert table["path"].to_list() == [["T0", "M0", "L0"], ["T0", "L1"], None]
    assert table["top_id"].to_list() == ["T0", "T0", None]
    assert table["level_1_id"].to_list() == ["M0", "L1", None]
    placed = table.head(2).drop("level_1_id", "note")
    rundir.check_paths(placed, tax, Path("assignments.parquet"))  # what loading a run checks
