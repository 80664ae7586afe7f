"""One input reader: every module reads input through ``bailclio.ingest``'s public functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("clio", "taxonomy", "embeddings", "explorer", "bench")
READER_MODULES = {"ingest", "readers", "rows", "stream"}


def private_uses(path: Path) -> list[str]:
    """``module._name`` uses and ``from bailclio.module import _name`` imports of the reader's
    modules in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
        if module.startswith("bailclio.") and module.split(".")[-1] in READER_MODULES:
            found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
        owner = node.value.id if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) else ""
        if owner in READER_MODULES and node.attr.startswith("_"):
            found.append(f"{owner}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_the_reader() -> None:
    offenders = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.stem in READER_MODULES and folder == "clio":
                continue
            uses = private_uses(path)
            if uses:
                offenders[str(path.relative_to(ROOT))] = uses
    assert offenders == {}


def test_the_check_sees_a_private_use(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from bailclio import ingest\nfrom bailclio.stream import _x\ningest._accept(1)\n")
    assert sorted(private_uses(src)) == ["bailclio.stream._x", "ingest._accept"]


def test_reader_modules_stay_small() -> None:
    for name in READER_MODULES:
        lines = (ROOT / "clio" / f"{name}.py").read_text(encoding="utf-8").count("\n")
        assert lines <= 500, f"clio/{name}.py has {lines} lines"
