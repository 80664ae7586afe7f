"""Imports go one way: types and the taxonomy model at the bottom, then the stages, the LLM, the
run-directory I/O, the readers and the API, then the commands and the explorer. No cycles.

The graph is read from the source (an AST walk, every import, at module level or inside a
function); imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"clio": "bailclio", "embeddings": "bailclio.embeddings", "taxonomy": "bailclio.taxonomy"}
FOLDERS["explorer"] = "bailclio.explorer"

# (layer, module patterns); a module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "types",
        (
            "bailclio",
            "bailclio.atomic",
            "bailclio.errors",
            "bailclio.paths",
            "bailclio.plugins",
            "bailclio.stats",
            "bailclio.provenance",
            "bailclio.config",
            "bailclio.datasets",
            "bailclio.taxonomy",
            "bailclio.taxonomy.model",
            "bailclio.taxonomy.edits",
        ),
    ),
    (
        "stages",
        (
            "bailclio.readers",
            "bailclio.rows",
            "bailclio.ingest",
            "bailclio.reduce",
            "bailclio.cluster",
            "bailclio.hierarchy",
            "bailclio.naming",
            "bailclio.keyphrases",
            "bailclio.stages",
            "bailclio.components",
            "bailclio.embeddings*",
            "bailclio.gpu",
            "bailclio.stream",
            "bailclio.stability",
        ),
    ),
    (
        "llm",
        (
            "bailclio.llm*",
            "bailclio.llmnaming",
            "bailclio.llmnaming.*",
            "bailclio.detect",
            "bailclio.detect.protocol",
            "bailclio.detect.scoring",
            "bailclio.detect.options",
            "bailclio.detect.conversations",
            "bailclio.detect.outputs",
            "bailclio.detect.prompt_method",
            "bailclio.detect.detector",
            "bailclio.detect.false_bails",
            "bailclio.detect.refusal",
            "bailclio.detect.refusal_lexical",
        ),
    ),
    ("rundir", ("bailclio.rundir", "bailclio.outputs")),
    (
        "readers and API",
        (
            "bailclio.taxonomy.*",
            "bailclio.taxonomer",
            "bailclio.fitting",
            "bailclio.pipeline",
            "bailclio.placer",
            "bailclio.scale",
            "bailclio.scale_ray",
            "bailclio.tree",
            "bailclio.detect.runner",
            "bailclio.report*",
        ),
    ),
    ("commands and explorer", ("bailclio.commands*", "bailclio.cli", "bailclio.explorer*")),
]


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = f
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    deps: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("bailclio"):
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            names = [a.name for a in node.names if f"{node.module}.{a.name}" not in known]
            deps |= subs
            if names or not subs:
                deps.add(node.module)
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name.startswith("bailclio")}
    return {d for d in deps if d in known}


@functools.cache
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(f, known) - {m} for m, f in mods.items()}


def layer_of(module: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        for pat in patterns:
            if re.fullmatch(re.escape(pat).replace(r"\*", ".*"), module):
                return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_function_level_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "from bailclio import rundir\n"
        "if TYPE_CHECKING:\n    from bailclio.taxonomer import Taxonomer\n"
        "def f():\n    from bailclio.llm import make_backend\n"
    )
    known = {"bailclio", "bailclio.rundir", "bailclio.taxonomer", "bailclio.llm"}
    assert imports_of(f, known) == {"bailclio.rundir", "bailclio.llm"}
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_there_is_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_imports_go_down_the_layers() -> None:
    g = graph()
    upward = []
    for module in sorted(g):
        mine = layer_of(module)
        above = sorted(d for d in g[module] if layer_of(d) > mine)
        if above:
            upward.append(f"{module} ({LAYERS[mine][0]}) imports {above}")
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_only_rundir_spells_the_run_directory_file_names() -> None:
    from bailclio import rundir

    names = {rundir.MANIFEST, rundir.CONVERSATIONS, rundir.ASSIGNMENTS, rundir.EMBEDDINGS, rundir.SPACE}
    names |= {rundir.REJECTS, rundir.CURATION, rundir.DETECTIONS, rundir.BAILS, rundir.LLM_CACHE}
    for module, path in modules().items():
        if module == "bailclio.rundir":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert node.value not in names, f"{module}:{node.lineno} spells '{node.value}'"


def test_no_library_module_writes_the_environment() -> None:
    for module, path in modules().items():
        if module == "bailclio.cli":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"os\.environ(\[[^\]]+\]\s*=|\.setdefault|\.update|\.pop)", text), module


def test_the_stage_interfaces_import_no_stage_implementation() -> None:
    # stages.py holds the protocols and the data the stages hand each other; the implementations
    # import it, never the other way round
    assert graph()["bailclio.stages"] <= {"bailclio", "bailclio.config", "bailclio.errors"}
    assert "bailclio.stages" in graph()["bailclio.cluster"] & graph()["bailclio.hierarchy"]
