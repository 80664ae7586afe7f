"""The explorer's run comparison (no Streamlit here): :func:`bailclio.taxonomy.diff.diff_runs`'s
result as tables for the page, the same numbers ``bailclio diff A B`` prints.

Both runs' rows are placed on A's taxonomy and compared there: each node's share on both sides
with its 95% interval, the change with its 95% interval and the Benjamini-Hochberg q of its test.
A node *grew* or *shrank* only when that change is significant; any other move is inside the noise
and says so. The matches between the two runs' own taxonomies come second, low-similarity matches
as *uncertain*, never as a change.
"""

from __future__ import annotations

import polars as pl

from bailclio.taxonomy.diff import DiffResult, Share

NO_CHANGE = "no change beyond noise"


def status(change: float, significant: bool) -> str:
    """``grew`` / ``shrank`` for a significant change, else :data:`NO_CHANGE`."""
    if not significant:
        return NO_CHANGE
    return "grew" if change > 0 else "shrank"


def _interval(lo: float, hi: float, points: bool = False) -> str:
    if points:
        return f"{100 * lo:+.1f} to {100 * hi:+.1f} pp"
    return f"{100 * lo:.1f}–{100 * hi:.1f}%"


def _share_cells(prefix: str, s: Share) -> dict[str, object]:
    return {f"{prefix} share": s.share, f"{prefix} 95% interval": _interval(s.ci_low, s.ci_high)}


def node_table(result: DiffResult) -> pl.DataFrame:
    """One row per node of A's taxonomy at the level (both sides placed on it)."""
    rows = []
    for n in result.nodes or []:
        rows.append(
            {
                "status": status(n.change, n.significant),
                "node": n.name,
                "id": n.id,
                **_share_cells("A", n.a),
                **_share_cells("B", n.b),
                "change (pp)": round(100 * n.change, 2),
                "change 95% interval": _interval(n.change_ci_low, n.change_ci_high, points=True),
                "q": n.q,
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def pair_table(result: DiffResult) -> pl.DataFrame:
    """The two runs' own nodes matched: similarity, own shares, change; uncertain pairs say so."""
    rows = []
    for m in result.matched:
        rows.append(
            {
                "status": "uncertain match" if m.status != "matched" else status(m.change, m.significant),
                "A node": m.a_name,
                "A id": m.a_id,
                "B node": m.b_name,
                "B id": m.b_id,
                "similarity": round(m.similarity, 3),
                **_share_cells("A", m.a),
                **_share_cells("B", m.b),
                "change (pp)": round(100 * m.change, 2),
                "change 95% interval": _interval(m.change_ci_low, m.change_ci_high, points=True),
                "partition gap (pp)": None if m.partition_gap is None else round(100 * m.partition_gap, 2),
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def unmatched_table(items: list) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "node": x.name,
                "id": x.id,
                "share": x.share,
                "95% interval": _interval(x.ci_low, x.ci_high),
                "best similarity": round(x.best_similarity, 3),
            }
            for x in items
        ],
        schema={
            "node": pl.String,
            "id": pl.String,
            "share": pl.Float64,
            "95% interval": pl.String,
            "best similarity": pl.Float64,
        },
    )


def change_bars(result: DiffResult, top: int = 25) -> list[tuple[str, float, float, float, bool]]:
    """(label, change, interval low, interval high, significant) for the largest changes on A's
    taxonomy, largest first."""
    items = [
        (f"{n.name[:50]} [{n.id}]", n.change, n.change_ci_low, n.change_ci_high, n.significant)
        for n in result.nodes or []
    ]
    return sorted(items, key=lambda it: -abs(it[1]))[:top]
