"""Plain-text rendering of a run: the taxonomy tree with sizes and shares, and the run summary."""

from __future__ import annotations

import sys
from typing import IO, Any

from bailclio.rundir import Run
from bailclio.taxonomy.model import UNSTABLE_BELOW, Taxonomy


def print_tree(run: Run, depth: int | None = None, file: IO[str] = sys.stdout) -> None:
    """Every node down to ``depth`` levels (all by default), children indented under their parent,
    largest first."""
    tax = run.taxonomy
    total = max(len(run.assignments), 1)
    max_depth = tax.depth if depth is None else depth
    width = max([6, *(len(n.id) for n in tax.nodes)])
    measured = any(n.stability is not None for n in tax.nodes)

    def walk(node_id: str | None, indent: int) -> None:
        for node in sorted(tax.children(node_id), key=lambda n: (-n.size, n.id)):
            if node.level >= max_depth:
                return
            share = 100.0 * node.size / total
            stab = ""
            if measured:
                stab = f"{'-' if node.stability is None else f'{node.stability:.2f}':>9}  "
            mark = "  (unstable)" if node.unstable else ""
            print(
                f"{'  ' * indent}{node.id:<{width}} {node.size:>7}  {share:5.1f}%  {stab}{node.name}{mark}",
                file=file,
            )
            walk(node.id, indent + 1)

    print(f"{'id':<{width}} {'rows':>7}  {'share':>6}  {'stability  ' if measured else ''}name", file=file)
    walk(None, 0)
    if measured:
        print(
            f"\nstability: how often the node is found again when the clustering is refitted (median "
            f"best-match Jaccard); below {UNSTABLE_BELOW} marked (unstable)",
            file=file,
        )


def structure_line(sizes: list[int]) -> str:
    """``sizes`` (node count per level, top first) in words.

    >>> structure_line([13, 32, 79])
    '3 levels: 13 top categories, 32 intermediate, 79 leaves'
    >>> structure_line([6, 12, 25, 50, 110])
    '5 levels: 6 top categories, 12 / 25 / 50 at levels 1-3, 110 leaves'
    """
    depth = len(sizes)
    if depth == 1:
        return f"1 level: {sizes[0]} leaves"
    parts = [f"{sizes[0]} top categories"]
    if depth == 3:
        parts.append(f"{sizes[1]} intermediate")
    elif depth > 3:
        parts.append(f"{' / '.join(map(str, sizes[1:-1]))} at levels 1-{depth - 2}")
    parts.append(f"{sizes[-1]} leaves")
    return f"{depth} levels: " + ", ".join(parts)


def level_sizes(manifest: dict[str, Any], taxonomy: Taxonomy | None = None) -> list[int]:
    """Node count per level: from ``taxonomy`` when given (curation can change them), else the
    manifest (format 1 manifests have top / intermediate / leaves)."""
    if taxonomy is not None:
        return [len(taxonomy.level(lv)) for lv in range(taxonomy.depth)]
    c = manifest["counts"]
    if "nodes_per_level" in c:
        return list(c["nodes_per_level"])
    return [c["top"], c["intermediate"], c["leaves"]]


def print_summary(
    manifest: dict[str, Any], path: Any, file: IO[str] = sys.stdout, taxonomy: Taxonomy | None = None
) -> None:
    c = manifest.get("counts") or {}
    t = manifest.get("timings_s") or {}
    outliers = c.get("outliers", 0)
    print(
        f"\nrun directory: {path}\n"
        f"rows read {c.get('rows_read', '?')}, rejected {c.get('rejected', '?')}, accepted "
        f"{c.get('accepted', '?')} ({c.get('duplicates_collapsed', 0)} exact duplicates collapsed)\n"
        f"{structure_line(level_sizes(manifest, taxonomy))}; "
        f"{outliers} outliers ({100.0 * outliers / max(c.get('accepted') or 0, 1):.1f}%) "
        f"attached to their nearest leaf\n"
        f"time {float(t.get('total', 0.0)):.1f} s",
        file=file,
    )
    if manifest.get("status") == "incomplete":
        print("status: INCOMPLETE: " + "; ".join(manifest.get("incomplete") or []), file=file)
    cluster = (manifest.get("resolved") or {}).get("cluster") or {}
    if cluster.get("no_structure") and (c.get("accepted") or 0) >= 2:
        n = c.get("unique_texts", c.get("accepted"))
        print(f"no cluster structure: HDBSCAN found at most one cluster in {n} distinct texts", file=file)
    if c.get("rejected"):
        print(f"rejected rows are listed in {path}/rejects.jsonl", file=file)
