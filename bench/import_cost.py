"""Where the package's imports sit, and what importing it costs.

Counts the internal imports (of ``bailclio`` modules) made at module level and inside functions in
``clio/``, ``embeddings/``, ``taxonomy/`` and ``explorer/`` (imports under ``if TYPE_CHECKING:``
never run and are left out), lists the modules with the most in-function ones, and times
``python -c "import bailclio"`` and ``bailclio --help`` (median of ``--repeats`` fresh processes,
each against a bare ``python -c pass`` in the same loop, so the ratio holds on a loaded machine).
``--baseline DIR`` does the same for another checkout with its own ``.venv`` (e.g. an older
commit), counted and timed in the same command.

    python bench/import_cost.py [--repeats 7] [--top 15] [--baseline ../old-checkout]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"clio": "bailclio", "embeddings": "bailclio.embeddings", "taxonomy": "bailclio.taxonomy"}
FOLDERS["explorer"] = "bailclio.explorer"


def module_name(path: Path, root: Path) -> str:
    folder = path.relative_to(root).parts[0]
    rest = path.relative_to(root / folder).with_suffix("").parts
    parts = [FOLDERS[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _internal(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "bailclio"
    return any(a.name.split(".")[0] == "bailclio" for a in node.names)


def count_imports(tree: ast.AST) -> tuple[int, int]:
    """(module-level, in-function) internal imports of one module."""
    top = inner = 0

    def walk(node: ast.AST, in_function: bool) -> None:
        nonlocal top, inner
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom) and _internal(child):
                if in_function:
                    inner += 1
                else:
                    top += 1
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            walk(child, inside)

    walk(tree, False)
    return top, inner


def survey(root: Path) -> tuple[int, int, Counter[str]]:
    top_total = inner_total = 0
    by_module: Counter[str] = Counter()
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            top, inner = count_imports(ast.parse(path.read_text(encoding="utf-8")))
            top_total += top
            inner_total += inner
            if inner:
                by_module[module_name(path, root)] = inner
    return top_total, inner_total, by_module


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def commands(root: Path, label: str) -> dict[str, list[str]]:
    exe = root / ".venv" / "bin" / "python"
    return {
        f"{label}import bailclio": [str(exe), "-c", "import bailclio"],
        f"{label}bailclio --help": [str(exe.with_name("bailclio")), "--help"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--baseline", type=Path, help="another checkout with its .venv, measured alike")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args(argv)
    roots = {"": ROOT} | ({"baseline: ": args.baseline.resolve()} if args.baseline else {})
    for label, root in roots.items():
        top, inner, by_module = survey(root)
        print(f"{label}internal imports: {top + inner} ({top} at module level, {inner} inside functions)")
        for name, n in by_module.most_common(args.top):
            print(f"  {n:3d}  {name}")
    if args.no_timing:
        return 0
    cmds = {"python -c pass": [sys.executable, "-c", "pass"]}
    for label, root in roots.items():
        cmds |= commands(root, label)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeats):
        for name, cmd in cmds.items():
            times[name].append(timed(cmd))
    base = statistics.median(times["python -c pass"])
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:28s} median {med * 1000:7.0f} ms  ({med / base:4.1f}x bare python, n={len(samples)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
