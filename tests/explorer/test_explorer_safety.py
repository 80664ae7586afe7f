"""The explorer serves only what it was started with, and only to whom it should."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support.explorer_runs import copy_run

from bailclio.cli import main
from bailclio.commands.explore import is_loopback
from bailclio.explorer import ROOTS_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def served(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page started on ``tmp_path/runs`` (the folder holding ``run_dir``)."""
    monkeypatch.setenv(ROOTS_ENV, str(run_dir.parent))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return run_dir.parent


def open_at(path: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["runs_root"] = path
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shows_a_run(at: AppTest) -> bool:
    return any(b.key and b.key.startswith("tree_") for b in at.button)


def test_the_path_box_opens_runs_under_the_served_folders(served: Path, run_dir: Path) -> None:
    assert shows_a_run(open_at(str(run_dir)))
    assert shows_a_run(open_at(str(served)))


@pytest.mark.parametrize("where", ["/", "/etc", "{runs}/..", "{runs}/r1/../../outside", "{outside}"])
def test_the_path_box_refuses_every_other_path_without_saying_whether_it_exists(
    served: Path, run_dir: Path, tmp_path: Path, where: str
) -> None:
    outside = copy_run(run_dir, tmp_path / "outside")  # a real run, just not served
    at = open_at(where.format(runs=served, outside=outside))
    assert not shows_a_run(at)
    assert [e.value for e in at.error] == [
        f"This explorer opens only runs under: {served} (the folders `bailclio explore` was started with)"
    ]
    assert "run_path" not in at.session_state or at.session_state["run_path"] != str(outside)


def test_a_symlink_out_of_the_served_folder_is_refused(served: Path, run_dir: Path, tmp_path: Path) -> None:
    outside = copy_run(run_dir, tmp_path / "elsewhere" / "secret")
    (served / "link").symlink_to(outside.parent, target_is_directory=True)
    at = open_at(str(served / "link"))
    assert not shows_a_run(at) and "opens only runs under" in at.error[0].value


@pytest.fixture()
def with_token(served: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    token = "correct-horse-battery-staple"
    monkeypatch.setenv(TOKEN_ENV, token)
    yield token


def test_with_a_token_nothing_is_shown_until_it_is_given(with_token: str, run_dir: Path) -> None:
    at = open_at(str(run_dir))
    assert not shows_a_run(at) and not at.sidebar.text_input
    at.text_input(key="access_token").set_value("wrong-guess").run()
    assert not shows_a_run(at) and "Wrong access token." in [e.value for e in at.error]
    at.text_input(key="access_token").set_value(with_token).run()
    assert shows_a_run(at)


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))


def test_a_network_host_needs_the_explicit_flag(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", str(run_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-remote" in err


def test_a_network_host_warns_and_requires_the_printed_token(run_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bailclio.cli", "explore", str(run_dir), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--host", "0.0.0.0", "--allow-remote"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        assert warning.startswith("WARNING: the explorer is served on 0.0.0.0")
        token = re.search(r"\?token=(\S+)", warning)
        assert token and len(token.group(1)) >= 20
        deadline = time.monotonic() + 40
        body = b""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.3)
        assert body == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
