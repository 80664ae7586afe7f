"""Fixtures shared by the LLM tests: a complete run whose bytes must survive a failed LLM run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.small_runs import snapshot


@pytest.fixture()
def good_run(small_run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A copy of a complete run at tmp_path/good and its bytes, to check it survives."""
    dest = tmp_path / "good"
    shutil.copytree(small_run, dest)
    return dest, snapshot(dest)
