"""What a command may write over: nothing a user owns is replaced, deleted or damaged.

Each test points a command at an output it must refuse and checks three things: exit status 2,
one line on stderr naming the path, and every file that was there still there, byte for byte.
The refusals come before any embedding, so these tests run on small hand-built inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
from support.small_runs import tiny_run

from bailclio import atomic, rundir
from bailclio.cli import main
from bailclio.errors import UserError
from bailclio.outputs import check_output_dir, check_output_file


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    return err


@pytest.fixture
def csv_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("id,content\n" + "".join(f"{i},request number {i}\n" for i in range(20)))
    return path


# --------------------------------------------------------------------------- --force


def test_force_keeps_a_folder_that_only_holds_rejects_and_user_files(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "rejects.jsonl").write_text('{"line": 1}\n')
    (out / "thesis.txt").write_text("four years of work")
    before = snapshot(out)
    refused(["run", str(csv_input), "--out", str(out), "--force"], capsys, str(out), "not a run directory")
    assert snapshot(out) == before


def test_force_keeps_a_detect_output_folder(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "det"
    out.mkdir()
    (out / rundir.DETECT_SUMMARY).write_text(json.dumps({"command": "detect", "counts": {}}))
    pl.DataFrame({"x": [1]}).write_parquet(out / rundir.BAILS)
    (out / rundir.LLM_CACHE).write_bytes(b"paid for")
    before = snapshot(out)
    refused(["run", str(csv_input), "--out", str(out), "--force"], capsys, "detect output folder")
    assert snapshot(out) == before


def test_force_keeps_a_run_directory_that_holds_a_user_file(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_run(tmp_path / "r")
    (out / "notes.md").write_text("mine")
    before = snapshot(out)
    refused(["run", str(csv_input), "--out", str(out), "--force"], capsys, "notes.md")
    assert snapshot(out) == before


def test_a_folder_is_a_run_by_its_manifest_not_by_its_file_names(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in rundir.REQUIRED:
        (fake / name).write_text("{}")
    assert not rundir.is_run_dir(fake)
    with pytest.raises(UserError, match="not a run directory"):
        rundir.check_out_dir(fake, force=True)
    assert rundir.is_run_dir(tiny_run(tmp_path / "real"))
    assert rundir.check_out_dir(tmp_path / "real", force=True) == tmp_path / "real"


def test_without_force_a_run_directory_is_kept(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_run(tmp_path / "r")
    before = snapshot(out)
    refused(["run", str(csv_input), "--out", str(out)], capsys, "--force")
    assert snapshot(out) == before


def test_a_run_is_never_replaced_by_a_run_of_its_own_files(tmp_path: Path) -> None:
    out = tiny_run(tmp_path / "r")
    with pytest.raises(UserError, match="holds the input"):
        check_output_dir(out, True, inputs=[out / rundir.CONVERSATIONS])


# --------------------------------------------------------------------------- output files


def test_export_over_a_file_of_the_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "r")
    before = snapshot(run)
    for name in (rundir.TAXONOMY, rundir.MANIFEST, rundir.CONVERSATIONS):
        refused(["export", str(run), "--format", "csv", "--out", str(run / name)], capsys, "file of the run")
    assert snapshot(run) == before
    assert rundir.load_run(run).assignments.height == 8


def test_plots_over_a_file_of_the_run_or_a_device_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    before = snapshot(run)
    for out in (run / rundir.TAXONOMY, run / rundir.ASSIGNMENTS):
        refused(["diff", str(run), str(run), "--plot", str(out)], capsys, "file of the run")
    refused(["diff", str(run), str(run), "--plot", "/dev/null"], capsys, "/dev/null")
    assert snapshot(run) == before
    assert rundir.load_run(run).assignments.height == 8


def test_assign_over_the_run_assignments_is_refused_before_embedding(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    other = tiny_run(tmp_path / "other")
    before = snapshot(tmp_path)
    argv = ["assign", str(run), str(csv_input), "--out"]
    refused([*argv, str(run / rundir.ASSIGNMENTS)], capsys, "file of the run")
    refused([*argv, str(other / rundir.ASSIGNMENTS)], capsys, str(other))
    refused([*argv, str(csv_input)], capsys, "is the input")
    assert snapshot(tmp_path) == before


def test_a_symlink_as_output_is_written_through_and_stays_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["export", str(run), "--format", "csv", "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert pl.read_csv(target).height == 8


def test_a_fifo_or_device_as_output_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "r")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    refused(["export", str(run), "--format", "csv", "--out", str(fifo)], capsys, "FIFO")
    link = tmp_path / "stdout.csv"
    link.symlink_to("/dev/null")
    refused(["export", str(run), "--format", "csv", "--out", str(link)], capsys, "device")
    assert link.is_symlink() and Path("/dev/null").is_char_device()
    refused(["export", str(run), "--format", "csv", "--out", str(tmp_path)], capsys, "folder")


def test_an_output_below_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_output_file(blocker / "sub" / "out.csv")


# --------------------------------------------------------------------------- concurrent writers


def test_a_second_writer_of_the_same_run_directory_is_refused(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    with atomic.locked(out):
        refused(["run", str(csv_input), "--out", str(out), "--seed", "3"], capsys, "another bailclio process")
    assert not out.exists()
    assert not atomic.lock_path(out).exists()


def test_a_run_that_appeared_while_building_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(UserError, match="not empty"), rundir.building(out, force=False) as staging:
        (staging / "a.txt").write_text("new")
        tiny_run(out)  # another writer finished first
    assert rundir.load_run(out).assignments.height == 8
    assert not (out / "a.txt").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_refused_before_any_work(
    tmp_path: Path, csv_input: Path, capsys: pytest.CaptureFixture[str], seed: str
) -> None:
    refused(["run", str(csv_input), "--out", str(tmp_path / "r"), "--seed", seed], capsys, "seed")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB file system, nearly full (mounting one needs root; skipped otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        (mount / "filler").write_bytes(b"\0" * (200 << 10))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_output(
    tmp_path: Path, full_disk: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    run = tiny_run(tmp_path / "r", n=3000)
    out = full_disk / f"x.{fmt}"
    out.write_text("previous export")
    refused(["export", str(run), "--format", fmt, "--out", str(out)], capsys, str(out), "No space left")
    assert out.read_text() == "previous export"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", out.name]
