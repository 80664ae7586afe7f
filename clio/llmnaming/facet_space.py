"""What the rows are clustered on, decided from the facet answers, and the facets' report.

The clustered facet's summaries, unless they carry no information: when the answers collapse
(:mod:`bailclio.llmnaming.degeneracy`), or the facet fits no row, or more than
``llm.max_missing_share`` of the rows have no answer, every row is clustered on its rendered text
(``llm.degenerate_fallback``). A few rows without an answer are clustered on their text in the
facet's space (``mixed``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from bailclio.config import Config, FacetConfig
from bailclio.llmnaming.degeneracy import assess
from bailclio.llmnaming.facet_extract import FacetResults
from bailclio.llmnaming.facets import applies, row_kind

Rows = tuple[list[str], list[Any], list[dict[str, Any]], list[str]]


def rows_of(frame: pl.DataFrame) -> Rows:
    """The rows' texts, turns (None for a single text), bail records and kinds
    (:func:`~bailclio.llmnaming.facets.row_kind`)."""
    texts = frame["text"].to_list()
    turns = frame["conversation"].to_list() if "conversation" in frame.columns else [None] * len(texts)
    ctx_cols = [c for c in ("model", "bail_method", "bail_turn", "journal") if c in frame.columns]
    records = frame.select(ctx_cols).to_dicts() if ctx_cols else [{} for _ in texts]
    kinds = [row_kind(t, r) for t, r in zip(turns, records, strict=True)]
    return texts, turns, records, kinds


def per_facet_report(cfg: Config, res: FacetResults, kinds: list[str]) -> dict[str, dict[str, Any]]:
    """Per facet: who was asked, what came back, and whether the answers still differ."""
    per_facet: dict[str, dict[str, Any]] = {}
    for f in cfg.facets:
        col = res.column(f.name)
        asked = [applies(f, k) for k in kinds]
        entry: dict[str, Any] = {
            "applies_to": f.applies_to,
            "asked_rows": sum(asked),
            "not_applicable_rows": len(kinds) - sum(asked),
            "answered_rows": sum(v is not None for v in col),
            "rejected_rows": sum(f.name in i for i in res.issues),
        }
        if f.type == "text":
            first: dict[int, str | None] = {}
            copied: set[int] = set()
            for row, s in enumerate(res.slots):
                if s >= 0 and asked[row] and s not in first:
                    first[s] = col[row]
                    if "copied" in res.issues[row].get(f.name, ""):
                        copied.add(s)
            entry["quality"] = assess(list(first.values()), n_copied=len(copied)).to_dict()
        per_facet[f.name] = entry
    return per_facet


def choose_space(
    cfg: Config, facet: FacetConfig, info: dict[str, Any], summary: list[Any]
) -> tuple[str, str]:
    """What to cluster (``facet``, ``text``, ``text_and_facet`` or ``mixed``) and why."""
    n = len(summary)
    missing = sum(not s for s in summary)
    quality = info.get("quality", {})
    if info["asked_rows"] == 0:
        return "text", f"facet '{facet.name}' applies to none of the rows"
    if quality.get("degenerate") and cfg.llm.degenerate_fallback != "facet":
        reason = f"the answers of facet '{facet.name}' collapsed: " + "; ".join(quality["reasons"])
        return cfg.llm.degenerate_fallback, reason
    if missing and missing > cfg.llm.max_missing_share * n:
        return "text", (
            f"{missing} of {n} rows have no '{facet.name}' answer "
            f"(above llm.max_missing_share = {cfg.llm.max_missing_share})"
        )
    if missing:
        return "mixed", (
            f"{missing} of {n} rows have no '{facet.name}' answer and are clustered on "
            f"their rendered text, in the same space as {n - missing} facet summaries"
        )
    return "facet", ""


def cluster_texts_for(space: str, summary: list[Any], texts: list[str]) -> list[str]:
    if space == "text":
        return list(texts)
    if space == "text_and_facet":
        return [f"{s}\n{t}" if s else t for s, t in zip(summary, texts, strict=True)]
    return [s if s else t for s, t in zip(summary, texts, strict=True)]


def facet_columns(cfg: Config, res: FacetResults) -> list[pl.Series]:
    columns = []
    for f in cfg.facets:
        dtype = pl.Int64 if f.type == "integer" else pl.String
        columns.append(pl.Series(f"facet_{f.name}", res.column(f.name), dtype=dtype))
    columns.append(pl.Series("facets_error", res.errors, dtype=pl.String))
    issues = ["; ".join(f"{k}: {v}" for k, v in i.items()) or None for i in res.issues]
    columns.append(pl.Series("facets_issues", issues, dtype=pl.String))
    return columns


def failure_reasons(errors: list[str | None]) -> dict[str, int]:
    """The ten most common reasons rows have no facet answer, with their counts."""
    reasons: dict[str, int] = {}
    for e in errors:
        if e is not None:
            key = e if len(e) <= 120 else e[:117] + "..."
            reasons[key] = reasons.get(key, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10])


__all__ = [
    "rows_of",
    "choose_space",
    "cluster_texts_for",
    "facet_columns",
    "failure_reasons",
    "per_facet_report",
]
