"""The explorer's group comparison (no Streamlit here): which columns of a run can group its rows,
and :func:`bailclio.taxonomy.compare.compare_groups`'s result as tables for the page.

The numbers are ``compare_groups``'s own (the same as ``bailclio compare RUNDIR --by COLUMN``):
each node's share of every group's rows with its 95% Wilson interval, its test's
Benjamini-Hochberg q and whether it is significant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from bailclio.taxonomy.compare import MAX_GROUPS, CompareResult
from bailclio.taxonomy.model import UNSTABLE_BELOW

if TYPE_CHECKING:
    from bailclio.explorer.data import Explorer

PREFERRED = ("model", "bail_method", "source", "refused")
NOT_GROUPS = ("conversation_id", "text", "conversation", "source_line", "journal")


def group_columns(ex: Explorer) -> list[str]:
    """Columns whose values split the rows into 2..MAX_GROUPS groups (``model``,
    ``bail_method``, ``source``, ``refused`` first, then the other label columns)."""
    conv = ex.run.conversations
    out = []
    for c in (*PREFERRED, *sorted(conv.columns)):
        if c in out or c not in conv.columns or c in NOT_GROUPS or c.startswith("facet_"):
            continue
        dtype = conv.schema[c]
        if not (dtype in (pl.String, pl.Boolean, pl.Categorical) or dtype.is_integer()):
            continue
        if 2 <= conv[c].drop_nulls().n_unique() <= min(MAX_GROUPS, max(conv.height - 1, 2)):
            out.append(c)
    return out


def unstable(stability: float | None) -> bool:
    return stability is not None and stability < UNSTABLE_BELOW


def group_table(result: CompareResult) -> pl.DataFrame:
    """One row per node: significant ("yes", or "not tested" under a parent where the groups do
    not differ), q, stability, then each group's share and interval (text)."""
    rows = []
    for n in result.nodes:
        row: dict[str, object] = {
            "significant": "yes" if n.significant else ("" if n.tested else "not tested"),
            "node": n.name,
            "id": n.id,
            "q": n.q,
            "stability": n.stability,
            "unstable": "unstable" if unstable(n.stability) else "",
        }
        for g in result.groups:
            s = n.groups[g]
            row[f"{g}: share"] = s.share
            row[f"{g}: 95% interval"] = f"{100 * s.ci95[0]:.1f}–{100 * s.ci95[1]:.1f}%"
            row[f"{g}: rows"] = s.n
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    if all(n.stability is None for n in result.nodes):
        frame = frame.drop("stability", "unstable")
    return frame


def interval_points(result: CompareResult) -> list[dict[str, object]]:
    """Per group: the nodes' labels, shares and the distances to each interval end (for error bars)."""
    labels = [("★ " if n.significant else "") + f"{n.name[:50]} [{n.id}]" for n in result.nodes]
    out = []
    for g in result.groups:
        shares = [n.groups[g].share for n in result.nodes]
        out.append(
            {
                "group": g,
                "labels": labels,
                "share": shares,
                "minus": [s - n.groups[g].ci95[0] for s, n in zip(shares, result.nodes, strict=True)],
                "plus": [n.groups[g].ci95[1] - s for s, n in zip(shares, result.nodes, strict=True)],
            }
        )
    return out
