"""``kill -9`` at a stage of ``run``, ``detect``, ``export`` and ``assign`` leaves the previous
output as it was: every command builds its output beside the destination and puts it in place in
one rename only when it is complete. Each test starts the real CLI in a subprocess over a good
previous output, kills it at a stage boundary (a progress line, a staging directory, the LLM calls
under way) or at a moment, and checks the previous output byte for byte (or, where the kill may
land after the final rename, that what is there is the complete new output, never a part).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from support.scripted_server import ScriptedServer

from bailclio.rundir import is_run_dir, load_run

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


def snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


class Proc:
    """The CLI in a subprocess; its stderr lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bailclio.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append(line)

    def wait_for(self, ready: Callable[[], bool], timeout_s: float = 180) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return True
            if self.p.poll() is not None:
                return ready()
            time.sleep(0.01)
        return False

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=30)
        self._t.join(timeout=10)


def said(proc: Proc, text: str) -> Callable[[], bool]:
    return lambda: any(text in line for line in proc.lines)


@pytest.fixture()
def good_run(small_run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / "good"
    shutil.copytree(small_run, dest)
    return dest


@pytest.mark.parametrize("stage", ["staging", "reduce", "write"])
def test_kill_9_during_run_force_leaves_the_previous_run(
    stage: str, good_run: Path, bailbench_sample: Path, tmp_path: Path
) -> None:
    before = snapshot(good_run)
    proc = Proc(["run", str(bailbench_sample), "--out", str(good_run), "--force", "--seed", "7"], tmp_path)
    if stage == "staging":
        reached = proc.wait_for(lambda: any(good_run.parent.glob(".good.*.partial")))
    else:
        reached = proc.wait_for(said(proc, f"[bailclio] {stage} ..."))
    proc.kill()
    assert reached, "".join(proc.lines)[-2000:]
    after = snapshot(good_run)
    if stage == "write" and after != before:  # killed after the final rename: the new run, whole
        assert is_run_dir(good_run) and load_run(good_run).assignments.height == 300
    else:
        assert after == before
    if stage != "reduce":
        return
    # the next run clears what the killed one left beside the destination
    code = subprocess.run(
        [sys.executable, "-m", "bailclio.cli", "run", str(bailbench_sample), "--out", str(good_run),
         "--force", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr
    assert [p.name for p in good_run.parent.iterdir()] == ["good"]


def test_kill_9_during_detect_leaves_the_previous_outputs(tmp_path: Path) -> None:
    from support.detect_model import CONVERSATIONS, simulated_model, write_jsonl

    rows = [{**c, "id": f"{c['id']}-{i}"} for i in range(5) for c in CONVERSATIONS]
    src = write_jsonl(tmp_path / "convs.jsonl", rows)
    out = tmp_path / "detect"
    model = "Qwen/Qwen2.5-7B-Instruct"
    args = ["detect", str(src), "--model", model, "--out", str(out), "--no-progress"]
    args += ["--max-concurrency", "2"]
    with ScriptedServer(simulated_model, model=model) as srv:
        first = subprocess.run(
            [sys.executable, "-m", "bailclio.cli", *args, "--base-url", srv.base_url],
            cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        before = {k: v for k, v in snapshot(out).items() if k != "llm_cache.sqlite"}
        assert {"detections.parquet", "bails.parquet", "summary.json", "rejects.jsonl"} <= set(before)
        srv.reset()
        srv.latency_ms = 200  # the rerun (a fresh cache) asks every question again, slowly
        fresh = ["--llm-cache", str(tmp_path / "fresh.sqlite")]
        proc = Proc([*args, "--base-url", srv.base_url, *fresh], tmp_path)
        reached = proc.wait_for(lambda: len(srv.requests) >= 3)
        proc.kill()
        srv.latency_ms = 0
        assert srv.wait_idle(10)
    assert reached, "".join(proc.lines)[-2000:]
    assert {k: v for k, v in snapshot(out).items() if k != "llm_cache.sqlite"} == before


def test_kill_9_during_export_and_assign_leaves_the_previous_file_or_the_whole_new_one(
    good_run: Path, bailbench_sample: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "labels.csv"
    assigned = tmp_path / "assigned.csv"
    for args in (
        ["export", str(good_run), "--format", "csv", "--out", str(exported)],
        ["assign", str(good_run), str(bailbench_sample), "--out", str(assigned), "--quiet"],
    ):
        cmd = [sys.executable, "-m", "bailclio.cli", *args]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
    rows = {p: pl.read_csv(p).height for p in (exported, assigned)}
    again = (
        (["export", str(good_run), "--format", "csv", "--level", "0", "--out", str(exported)], exported),
        (["assign", str(good_run), str(bailbench_sample), "--out", str(assigned), "-k", "3"], assigned),
    )
    for delay_s in (0.5, 2.0, 4.0):
        for args, path in again:
            before = path.read_bytes()
            proc = Proc(args, tmp_path)
            proc.wait_for(lambda: False, timeout_s=delay_s)
            proc.kill()
            if path.read_bytes() != before:  # the kill came after the rename: the whole new file
                assert pl.read_csv(path).height == rows[path]
