"""The README's notebook example runs as it stands and does what it says."""

from __future__ import annotations

import contextlib
import io
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


def test_the_readme_is_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move details into docs/"


def test_the_readme_links_to_files_that_exist_or_are_docs_pages() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {m.split("#", 1)[0] for m in re.findall(r"\]\(([^)#][^)]*)\)", text)}
    local = {t for t in targets if not t.startswith(("http://", "https://"))}
    assert local, "the README links to no page"
    # docs/*.md pages may be written by others later; every other target must exist now
    missing = [t for t in local if not (ROOT / t).exists() and not re.fullmatch(r"docs/[\w-]+\.md", t)]
    assert not missing, f"README links to missing files: {missing}"


def test_the_notebook_example_runs_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not (tmp_path / "data").exists() and ROOT not in tmp_path.parents
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
