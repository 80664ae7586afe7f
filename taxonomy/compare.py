"""Compare groups of rows on one taxonomy: each node's share of every group, with its interval,
and whether the groups differ there.

For a grouping column (``model``, ``source``, ``bail_method``, ``refused``, ...) and a level of the
taxonomy, every node gets, per group: ``n`` (the group's rows in the node), ``share`` (``n`` over
the group's rows) and ``ci95`` (95% Wilson interval of the share), and a ``p``-value for "the
groups differ in this node":

* ``reference="typical"`` (default): the node's mix of groups is tested against the mix in the
  nodes where the groups do not differ (:func:`typical_reference_tests`), which keeps one group's
  extra category from flagging every other node through dilution.
* ``reference="all"``: a test of the k x 2 table (groups x in/out of the node,
  :func:`bailclio.stats.k_by_2_test`: chi-square, or Fisher's exact test when counts are small).

``q`` adjusts ``p`` for the number of nodes tested, and ``significant`` is ``q <= 0.05``:

* At the top level, and with ``testing="flat"`` at any level, by Benjamini-Hochberg across the
  level's nodes.
* Below the top with ``testing="hierarchical"`` (default), nodes are tested (with the typical
  reference: against the level above's typical mix) as families of siblings
  (:func:`hierarchical_families`): a parent's family is opened only where the groups
  differ in the parent (its own test, or how the groups spread over its children), and each open
  family is adjusted by Benjamini-Hochberg at 0.05 x (open parents / parents) (Benjamini and
  Bogomolov's selective inference on families). Children of a parent that is not opened are not
  tested (``q`` = 1).

Rows whose value in the column is missing belong to no group; how many there were is reported
(``missing``), never hidden.

Example::

    >>> from bailclio.rundir import load_run                          # doctest: +SKIP
    >>> result = compare_groups(load_run("runs/models"), "model", level=0)  # doctest: +SKIP
    >>> result.to_json()["nodes"][0]["significant"]                    # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.stats import (
    benjamini_hochberg,
    composition_test,
    contingency_test,
    k_by_2_test,
    wilson_interval,
)
from bailclio.taxonomy.model import level_label

if TYPE_CHECKING:
    from bailclio.rundir import Run

ALPHA = 0.05
MAX_GROUPS = 50  # a column with more distinct values is not a grouping column
REFERENCES = ("typical", "all")
TESTINGS = ("hierarchical", "flat")


@dataclass
class GroupShare:
    n: int
    total: int
    share: float
    ci95: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "share": round(self.share, 6), "ci95": [round(x, 6) for x in self.ci95]}


@dataclass
class NodeComparison:
    id: str
    name: str
    level: int
    groups: dict[str, GroupShare]
    p: float
    q: float
    significant: bool
    test: str  # which test gave p (bailclio.stats.TableTest.method)
    stability: float | None = None
    tested: bool = True  # False: below a parent where the groups do not differ (hierarchical)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "level": self.level,
            "groups": {g: s.to_json() for g, s in self.groups.items()},
            "p": self.p,
            "q": self.q,
            "significant": self.significant,
        }


@dataclass
class CompareResult:
    by: str
    level: int
    groups: list[str]
    group_sizes: dict[str, int]
    nodes: list[NodeComparison]
    depth: int
    missing: int = 0  # rows with no value in the column (in no group)
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"by", "level", "groups", "nodes": [{"id", "name", "level", "groups": {g: {"n",
        "share", "ci95"}}, "p", "q", "significant"}]}``."""
        return {
            "by": self.by,
            "level": self.level,
            "groups": list(self.groups),
            "nodes": [n.to_json() for n in self.nodes],
        }

    @property
    def significant(self) -> list[NodeComparison]:
        return [n for n in self.nodes if n.significant]

    def node(self, node_id: str) -> NodeComparison:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


def group_label(value: Any) -> str:
    """A column value as a group name: booleans as ``true`` / ``false``, the rest as text.

    >>> [group_label(True), group_label(3), group_label("gpt-4o")]
    ['true', '3', 'gpt-4o']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def group_values(run: Run, by: str) -> list[str | None]:
    """Each assigned row's group under column ``by`` (``None`` where the value is missing), in
    the order of the assignments table. Unknown or unusable columns are a :class:`UserError`."""
    conv = run.conversations
    if by not in conv.columns:
        usable = [
            c for c in conv.columns if c not in ("conversation_id", "text", "conversation", "source_line")
        ]
        hint = f" (columns: {', '.join(usable)})" if usable else " (the input kept no other columns)"
        raise UserError(f"{run.path}: no column '{by}' in the run's conversations{hint}")
    dtype = conv.schema[by]
    if dtype.is_nested() or dtype == pl.Binary:
        raise UserError(f"{run.path}: column '{by}' holds {dtype}, not group values")
    ids = run.assignments["conversation_id"]
    if conv.height == ids.len() and conv["conversation_id"].equals(ids):
        column = conv[by]
    else:
        frame = pl.DataFrame({"conversation_id": ids})
        column = frame.join(conv.select("conversation_id", by), on="conversation_id", how="left")[by]
    return [None if v is None else group_label(v) for v in column.to_list()]


def _check_groups(run: Run, by: str, values: list[str | None]) -> list[str]:
    groups = sorted({v for v in values if v is not None})
    if len(groups) > MAX_GROUPS:
        raise UserError(
            f"{run.path}: column '{by}' has {len(groups)} distinct values; compare needs a grouping "
            f"column with at most {MAX_GROUPS}"
        )
    if len(groups) < 2:
        only = f" (only '{groups[0]}')" if groups else " (every value is missing)"
        raise UserError(f"{run.path}: column '{by}' has fewer than two groups{only}: nothing to compare")
    return groups


def compare_groups(
    run: Run,
    by: str,
    level: int | None = None,
    *,
    alpha: float = ALPHA,
    seed: int = 0,
    reference: str = "typical",
    testing: str = "hierarchical",
) -> CompareResult:
    """Every node at ``level`` (default 0, the top) compared across the groups of column ``by``
    (see the module docstring). ``seed`` fixes the Monte-Carlo p-values of small tables.
    ``reference``: "typical" (default) or "all"; ``testing``: "hierarchical" (default) or "flat"
    (one Benjamini-Hochberg family per level)."""
    if reference not in REFERENCES:
        raise UserError(f"unknown reference '{reference}' (use one of {', '.join(REFERENCES)})")
    if testing not in TESTINGS:
        raise UserError(f"unknown testing '{testing}' (use one of {', '.join(TESTINGS)})")
    depth = run.taxonomy.depth
    level = 0 if level is None else level
    if not 0 <= level < max(depth, 1):
        raise UserError(f"{run.path}: level {level} does not exist (levels 0..{depth - 1})")
    values = group_values(run, by)
    groups = _check_groups(run, by, values)
    missing = sum(v is None for v in values)
    hierarchical = testing == "hierarchical" and level > 0
    # hierarchical: this level's nodes are tested against the level above's typical mix (below),
    # so the level's own typical rounds would be work thrown away
    own = "all" if hierarchical else reference
    rows, _ = _level_tests(run, values, groups, level, alpha=alpha, seed=seed, reference=own)
    totals = {g: rows[0].groups[g].total for g in groups}
    notes = [f"{missing} rows have no value in '{by}' and belong to no group"] if missing else []
    if reference == "typical":
        notes.append("each node tested against the mix of groups in the nodes where they do not differ")
    if hierarchical:
        parents, parent_mix = _level_tests(
            run, values, groups, level - 1, alpha=alpha, seed=seed, reference=reference
        )
        if reference == "typical":
            # the typical mix is the level above's: the rows under the parents where the groups
            # do not differ (a category spread thin over many small nodes would tilt this
            # level's own typical mix towards the group that has it)
            for row in rows:
                test = composition_test([row.groups[g].n for g in groups], parent_mix, seed=seed)
                row.p, row.test = test.p, test.method
        opened, total = hierarchical_families(rows, parents, _parent_of(run, level), alpha=alpha, seed=seed)
        notes.append(
            f"nodes tested among their siblings under the {opened} of {total} parents (level "
            f"{level - 1}) where the groups differ; the others' children are not tested (q = 1)"
        )
    return CompareResult(
        by, level, groups, {g: int(totals[g]) for g in groups}, rows, depth, missing, alpha, notes
    )


def _level_tests(
    run: Run,
    values: list[str | None],
    groups: list[str],
    level: int,
    *,
    alpha: float,
    seed: int,
    reference: str,
) -> tuple[list[NodeComparison], list[int]]:
    """Every node of ``level`` with its shares and its test, adjusted as one flat family, and
    the mix of groups it was tested against (rows per group: all rows, or the typical nodes')."""
    frame = pl.DataFrame(
        {"node": run.level_ids(level), "group": values}, schema={"node": pl.String, "group": pl.String}
    ).drop_nulls("group")
    totals = dict(frame.group_by("group").len().iter_rows())
    counts = {(nd, g): int(c) for nd, g, c in frame.group_by("node", "group").len().iter_rows()}
    nodes = sorted(run.taxonomy.level(level), key=lambda n: (-n.size, n.id))
    rows: list[NodeComparison] = []
    for node in nodes:
        shares: dict[str, GroupShare] = {}
        table = []
        for g in groups:
            k, total = counts.get((node.id, g), 0), int(totals[g])
            shares[g] = GroupShare(k, total, k / total, wilson_interval(k, total))
            table.append([k, total - k])
        test = k_by_2_test(table, seed=seed)
        stability = node.extra.get("stability")
        rows.append(
            NodeComparison(
                node.id,
                node.name,
                level,
                shares,
                test.p,
                1.0,
                False,
                test.method,
                None if stability is None else float(stability),
            )
        )
    for row, q in zip(rows, benjamini_hochberg([r.p for r in rows]), strict=True):
        row.q = q
        row.significant = q <= alpha
    mix = [int(totals[g]) for g in groups]
    if reference == "typical":
        _, mix = typical_reference_tests(rows, groups, alpha=alpha, seed=seed)
    return rows, mix


def _parent_of(run: Run, level: int) -> dict[str, str]:
    return dict(zip(run.level_ids(level), run.level_ids(level - 1), strict=True))


def hierarchical_families(
    rows: list[NodeComparison],
    parents: list[NodeComparison],
    parent_of: dict[str, str],
    *,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[int, int]:
    """Re-adjust ``rows`` (the nodes of one level, already tested) as families of siblings.

    A parent is opened when the groups differ in it: its gate p-value is the Bonferroni
    combination of the parent's own test (``parents``' ``p``) and a test of how the groups spread
    over its children (:func:`bailclio.stats.contingency_test` on groups x children, rows inside
    the parent), so a shift between sibling categories that leaves the parent's total unchanged
    still opens it; gates are adjusted by Benjamini-Hochberg across all parents. Within each of the
    R open families of the m parents, the children's p-values are adjusted by Benjamini-Hochberg and
    compared with ``alpha * R / m`` (reported as ``q`` scaled by m / R, so that ``significant`` is
    ``q <= alpha``). Children of closed parents get ``q = 1`` and ``tested = False``.

    Why: tested flat, a level of many small nodes spends most of its false-discovery budget on
    nodes far from any difference; tested where the level above points, the nodes under a
    changed parent keep their power, while scaling by R / m keeps the expected share of false
    flags over the opened families at ``alpha`` (Benjamini and Bogomolov, 2014).
    Returns (R, m)."""
    families: dict[str, list[NodeComparison]] = {}
    for row in rows:
        families.setdefault(parent_of[row.id], []).append(row)
    groups = list(rows[0].groups) if rows else []
    gate: dict[str, float] = {}
    for parent in parents:
        children = families.get(parent.id, [])
        spread = contingency_test([[c.groups[g].n for c in children] for g in groups], seed=seed)
        gate[parent.id] = min(1.0, 2.0 * min(parent.p, spread.p))
    ids = [p.id for p in parents if p.id in families]
    opened = {i for i, q in zip(ids, benjamini_hochberg([gate[i] for i in ids]), strict=True) if q <= alpha}
    scale = len(ids) / len(opened) if opened else 1.0
    for pid, children in families.items():
        if pid not in opened:
            for c in children:
                c.q, c.significant, c.tested = 1.0, False, False
            continue
        for c, q in zip(children, benjamini_hochberg([c.p for c in children]), strict=True):
            c.q = min(1.0, q * scale)
            c.significant = c.q <= alpha
    return len(opened), len(ids)


def typical_reference_tests(
    rows: list[NodeComparison], groups: list[str], *, alpha: float = ALPHA, seed: int = 0
) -> tuple[int, list[int]]:
    """Test every node's mix of groups (its rows per group) against the mix in the nodes where
    the groups do not differ, found one node at a time: the most significant node not yet set
    apart is set apart and the reference mix recomputed without it, until no other node departs
    from the reference (Benjamini-Hochberg across all nodes each round). ``p``, ``q``,
    ``significant`` and ``test`` of ``rows`` are replaced by the last round's. Returns the rounds
    and the reference mix (rows per group in the nodes not set apart).

    Why: shares are of each group's own rows, so a category that one group has and another
    lacks lowers that group's share of every other node a little (its rows are spread over more
    categories); with many rows that dilution is significant under the test of all rows. Against
    the typical mix, only the nodes whose own mix departs from it are flagged."""
    apart: set[str] = set()
    rounds = 0
    while True:
        rounds += 1
        typical = [r for r in rows if r.id not in apart]
        mix = [sum(r.groups[g].n for r in typical) for g in groups]
        tests = [composition_test([r.groups[g].n for g in groups], mix, seed=seed) for r in rows]
        qs = benjamini_hochberg([t.p for t in tests])
        for row, test, q in zip(rows, tests, qs, strict=True):
            row.p, row.q, row.test, row.significant = test.p, q, test.method, q <= alpha
        departing = [r for r in typical if r.significant]
        if not departing or len(typical) <= 2:  # the reference needs nodes to stand on
            return rounds, mix
        apart.add(min(departing, key=lambda r: (r.p, r.q, r.id)).id)


def format_table(result: CompareResult) -> str:
    """The comparison as plain text: one line per node, each group's share and interval."""
    groups = result.groups
    width = max([6, *(len(n.id) for n in result.nodes)])
    col = max(22, *(len(g) + 2 for g in groups))
    label = level_label(result.level, result.depth) if result.depth > 0 else "top"
    sizes = ", ".join(f"{g} {result.group_sizes[g]}" for g in groups)
    lines = [
        f"compare by '{result.by}' at level {result.level} ({label}): {len(result.nodes)} nodes; "
        f"groups (rows): {sizes}",
        f"{'id':<{width}}  " + "".join(f"{g:>{col}}" for g in groups) + f"  {'q':>8}  name",
    ]
    for n in result.nodes:
        cells = ""
        for g in groups:
            s = n.groups[g]
            lo, hi = s.ci95
            cells += f"{f'{100 * s.share:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]':>{col}}"
        mark = "*" if n.significant else " "
        stab = "" if n.stability is None else f"  (stability {n.stability:.2f})"
        q = f"{n.q:8.3g}" if n.tested else f"{'-':>8}"
        lines.append(f"{n.id:<{width}}  {cells}  {q}{mark} {n.name}{stab}")
    untested = sum(not n.tested for n in result.nodes)
    lines.append(
        f"share of each group's rows in the node [95% Wilson interval]; q: the node's test across "
        f"groups, Benjamini-Hochberg adjusted; * significant at {result.alpha:.0%} "
        f"({len(result.significant)} of {len(result.nodes)} nodes"
        + (f"; - not tested: {untested} under parents where the groups do not differ)" if untested else ")")
    )
    lines.extend(f"note: {note}" for note in result.notes)
    return "\n".join(lines)


def plot(result: CompareResult, path: Any) -> None:
    """Each node's share per group with its 95% interval, significant nodes starred (PNG)."""
    import matplotlib  # heavy: only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = result.nodes
    k = len(result.groups)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(nodes) * max(1, k / 2) + 1.2)))
    step = 0.8 / k
    for j, g in enumerate(result.groups):
        ys = [i + (j - (k - 1) / 2) * step for i in range(len(nodes))]
        xs = [n.groups[g].share for n in nodes]
        lo = [n.groups[g].share - n.groups[g].ci95[0] for n in nodes]
        hi = [n.groups[g].ci95[1] - n.groups[g].share for n in nodes]
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=2, label=g)
    labels = [f"{'* ' if n.significant else ''}{n.id} {n.name[:40]}" for n in nodes]
    ax.set_yticks(range(len(nodes)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the group's rows (95% Wilson interval)")
    ax.set_title(f"by {result.by}, level {result.level}; * significant (BH q <= {result.alpha})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        atomic.write_file(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
