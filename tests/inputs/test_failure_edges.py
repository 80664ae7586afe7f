"""Smaller failure edges: unwritable output paths, damaged manifests, the assignments/taxonomy
contract, an empty last user turn in a round trip, diff on assign's CSV, a one-row run's
threshold. Each is one clear line and a non-zero exit, or a correct result, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bailclio.cli import main
from bailclio.ingest import read_input
from bailclio.rundir import load_run

pytestmark = pytest.mark.timeout(240)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    """A regular file: no directory can be made under it."""
    f = tmp_path / "file.txt"
    f.write_text("x")
    return f


def test_an_unwritable_run_out_is_one_line(
    bailbench_sample: Path, blocker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = blocker / "run"
    assert main(["run", str(bailbench_sample), "--out", str(out), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert str(out) in err


def test_an_unwritable_export_out_and_diff_plot_are_one_line(
    small_run: Path, blocker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(small_run), "--format", "csv", "--out", str(blocker / "x.csv")]) == 2
    assert str(blocker) in one_line_error(capsys)
    assert main(["diff", str(small_run), str(small_run), "--plot", str(blocker / "p.png")]) == 2
    assert str(blocker) in one_line_error(capsys)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [('"just a string"', "expected a JSON object"), ("{}", "format version"), (None, "'counts'")],
)
def test_a_damaged_manifest_is_one_line(
    small_run: Path, tmp_path: Path, manifest: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_run, broken)
    if manifest is None:  # a manifest without counts
        m = json.loads((broken / "manifest.json").read_text())
        del m["counts"]
        manifest = json.dumps(m)
    (broken / "manifest.json").write_text(manifest)
    for argv in (["show", str(broken)], ["export", str(broken), "--format", "csv"]):
        assert main(argv) == 2
        assert message in one_line_error(capsys)


def test_assignments_naming_a_node_missing_from_the_taxonomy_are_refused(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_run, broken)
    a = pl.read_parquet(broken / "assignments.parquet")
    first = pl.int_range(pl.len()) == 0
    a = a.with_columns(pl.when(first).then(pl.lit("L999")).otherwise("leaf_id").alias("leaf_id"))
    a.write_parquet(broken / "assignments.parquet")
    assert main(["show", str(broken)]) == 2
    assert "'L999' is not a node of the taxonomy" in one_line_error(capsys)


def test_an_empty_last_user_turn_survives_an_export_round_trip(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conv = pl.read_parquet(run_dir / "conversations.parquet")
    assert "conversation" in conv.columns
    turns = conv["conversation"].to_list()
    turns[0] = [*turns[0], {"role": "user", "content": ""}]  # the last user turn says nothing
    conv = conv.with_columns(pl.Series("conversation", turns, dtype=conv["conversation"].dtype))
    conv.write_parquet(run_dir / "conversations.parquet")
    out = tmp_path / "bb.csv"
    assert main(["export", str(run_dir), "--format", "bailbench", "--out", str(out)]) == 0
    capsys.readouterr()
    back = read_input(out)
    assert back.frame.height == conv.height and back.rejects == []
    assert pl.read_csv(out)["content"][0].strip()


def test_diff_reads_an_assign_csv_written_anywhere(
    small_run: Path, bailbench_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "elsewhere" / "assigned.csv"
    assert main(["assign", str(small_run), str(bailbench_sample), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["diff", str(small_run), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["b"]["rows"] == pl.read_csv(out).height == 300
    assert Path(result["b"]["run"]).resolve() == small_run.resolve()


def test_a_one_row_run_has_a_finite_threshold_and_says_so(
    small_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bailclio.taxonomy.placement import UNCALIBRATED_THRESHOLD, calibrate, reference

    run = load_run(small_run)
    ref = reference(run)
    one = type(ref)(**{**ref.__dict__, "raw": ref.raw[:1], "leaf_index": ref.leaf_index[:1]})
    assert calibrate(one, 10, 0.95).threshold == UNCALIBRATED_THRESHOLD
    assert "cannot be calibrated" in caplog.text
    assert np.isfinite(calibrate(ref, 10, 0.95).threshold) and calibrate(ref, 10, 1.0).threshold == float(
        "inf"
    )
