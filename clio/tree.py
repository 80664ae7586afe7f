"""Plain-text rendering of a run: the taxonomy tree with sizes and shares, and the run summary."""

from __future__ import annotations

import sys
from typing import IO, Any

from bailclio.rundir import Run


def print_tree(run: Run, depth: int | None = None, file: IO[str] = sys.stdout) -> None:
    tax = run.taxonomy
    total = max(len(run.assignments), 1)
    max_depth = tax.depth if depth is None else depth

    def walk(node_id: str | None, indent: int) -> None:
        for node in sorted(tax.children(node_id), key=lambda n: (-n.size, n.id)):
            if node.level >= max_depth:
                return
            share = 100.0 * node.size / total
            print(f"{'  ' * indent}{node.id:<6} {node.size:>7}  {share:5.1f}%  {node.name}", file=file)
            walk(node.id, indent + 1)

    print(f"{'id':<6} {'rows':>7}  {'share':>6}  name", file=file)
    walk(None, 0)


def print_summary(manifest: dict[str, Any], path: Any, file: IO[str] = sys.stdout) -> None:
    c = manifest["counts"]
    t = manifest["timings_s"]
    print(
        f"\nrun directory: {path}\n"
        f"rows read {c['rows_read']}, rejected {c['rejected']}, accepted {c['accepted']} "
        f"({c['duplicates_collapsed']} exact duplicates collapsed)\n"
        f"{c['top']} top categories, {c['intermediate']} intermediate, {c['leaves']} leaves; "
        f"{c['outliers']} outliers ({100.0 * c['outliers'] / max(c['accepted'], 1):.1f}%) "
        f"attached to their nearest leaf\n"
        f"time {t['total']:.1f} s",
        file=file,
    )
    if c["rejected"]:
        print(f"rejected rows are listed in {path}/rejects.jsonl", file=file)
