"""The README's notebook example runs as it stands and does what it says."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- notebook example: tests/project/test_readme.py runs this block as it stands -->"


def notebook_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARK in text, "the README lost its notebook example"
    after = text.split(MARK, 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.S)
    assert match, "the notebook example is not a python block right after its marker"
    return match.group(1)


def test_the_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.symlink(ROOT / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    code = notebook_block()
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    tx, placed, kmeans = scope["tx"], scope["placed"], scope["kmeans"]
    printed = out.getvalue()
    assert all(node.name in printed for node in tx.taxonomy_.roots)
    assert (tmp_path / "runs" / "notebook" / "manifest.json").exists()
    assert placed.height == 1 and set(placed.columns) >= {"leaf_id", "leaf_name", "distance"}
    assert len(kmeans.taxonomy_.leaves) == 12
