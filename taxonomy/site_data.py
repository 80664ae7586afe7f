"""What the static site shows, as one JSON-ready dict (:func:`site_data`): the run, then one entry
per node with its name, description, keywords, size and shares, stability (when the taxonomy has
it), its no-refusal share (when the rows have ``refused``), its share of each model's rows (when
the rows have ``model``) and a few exemplars and members.

Every share that compares comes with its 95% Wilson interval. Texts are cut to
:data:`TEXT_LIMIT` characters; nothing here is HTML (the page renders it as text).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from bailclio.stats import wilson_interval
from bailclio.taxonomy.export import aligned_conversations
from bailclio.taxonomy.model import UNSTABLE_BELOW, level_label

if TYPE_CHECKING:
    from bailclio.rundir import Run

SITE_FORMAT_VERSION = 1
MEMBERS_PER_NODE = 5
TEXT_LIMIT = 600


def cut(text: Any, limit: int = TEXT_LIMIT) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks a cut)."""
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def interval(k: int, n: int) -> dict[str, Any]:
    """``{"n", "count", "share", "ci95"}`` for ``k`` of ``n`` (share and interval null when n is 0)."""
    if n <= 0:
        return {"n": 0, "count": 0, "share": None, "ci95": None}
    lo, hi = wilson_interval(k, n)
    return {"n": n, "count": k, "share": k / n, "ci95": [lo, hi]}


def _level_frame(run: Run, conv: pl.DataFrame) -> pl.DataFrame:
    """One row per conversation: its id, text, outlier flag, node id at every level, and the
    ``model`` / ``refused`` columns when the run has them."""
    cols: dict[str, Any] = {
        "conversation_id": run.assignments["conversation_id"],
        "is_outlier": run.assignments["is_outlier"],
        "text": conv["text"] if "text" in conv.columns else pl.Series([""] * conv.height),
    }
    for lv in range(max(run.taxonomy.depth, 1)):
        cols[f"lvl{lv}"] = pl.Series(run.level_ids(lv), dtype=pl.String)
    if "model" in conv.columns:
        cols["model"] = conv["model"].cast(pl.String)
    if "refused" in conv.columns and conv["refused"].dtype == pl.Boolean:
        cols["refused"] = conv["refused"]
    return pl.DataFrame(cols)


def _member_samples(frame: pl.DataFrame, depth: int, k: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Up to ``k + 12`` candidate members per node, inliers first, in a seeded random order."""
    order = np.random.default_rng(seed).permutation(frame.height)
    shuffled = frame.with_columns(pl.Series("_order", np.argsort(order))).sort(["is_outlier", "_order"])
    out: dict[str, list[dict[str, Any]]] = {}
    for lv in range(depth):
        heads = shuffled.group_by(f"lvl{lv}", maintain_order=True).head(k + 12)
        for row in heads.iter_rows(named=True):
            node = row[f"lvl{lv}"]
            if node is not None:
                out.setdefault(node, []).append(row)
    return out


def _counts(frame: pl.DataFrame, depth: int, column: str) -> dict[tuple[str, Any], int]:
    """(node id, value of ``column``) -> rows, over every level."""
    out: dict[tuple[str, Any], int] = {}
    for lv in range(depth):
        for node, value, n in frame.group_by(f"lvl{lv}", column).len().iter_rows():
            if node is not None:
                out[(node, value)] = out.get((node, value), 0) + n
    return out


def _run_info(run: Run, total: int) -> dict[str, Any]:
    m = run.manifest
    depth = max(run.taxonomy.depth, 1)
    return {
        "name": run.path.name,
        "created": str(m.get("created_at", "")),
        "input": str((m.get("input") or {}).get("path", "")).rsplit("/", 1)[-1],
        "rows": total,
        "outliers": int((m.get("counts") or {}).get("outliers", 0) or 0),
        "levels": [level_label(lv, depth) for lv in range(depth)],
        "curated": bool(m.get("curation")),
        "status": str(m.get("status", "complete")),
        "exported": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def site_data(run: Run, *, members: int = MEMBERS_PER_NODE, seed: int = 0) -> dict[str, Any]:
    """Everything the site shows for ``run`` (see the module docstring)."""
    tax = run.taxonomy
    depth = max(tax.depth, 1)
    conv = aligned_conversations(run)
    frame = _level_frame(run, conv)
    total = frame.height
    texts = dict(zip(frame["conversation_id"].to_list(), frame["text"].to_list(), strict=True))
    samples = _member_samples(frame, depth, members, seed)
    models = sorted(str(m) for m in frame["model"].drop_nulls().unique()) if "model" in frame.columns else []
    model_totals = dict(frame.group_by("model").len().iter_rows()) if models else {}
    by_model = _counts(frame, depth, "model") if models else {}
    refusals = _counts(frame, depth, "refused") if "refused" in frame.columns else None
    has_stability = any(n.stability is not None for n in tax.nodes)
    nodes = []
    for n in sorted(tax.nodes, key=lambda x: (x.level, -x.size, x.id)):
        parent = tax.by_id.get(n.parent_id) if n.parent_id else None
        exemplars = [e for e in n.exemplar_ids if e in texts][:members]
        shown = set(exemplars)
        picked = [r for r in samples.get(n.id, []) if r["conversation_id"] not in shown][:members]
        entry: dict[str, Any] = {
            "id": n.id,
            "parent": n.parent_id,
            "level": n.level,
            "name": n.name,
            "description": n.description,
            "keywords": list(n.keywords),
            "size": n.size,
            "share": n.size / total if total else 0.0,
            "share_of_parent": n.size / parent.size if parent and parent.size else None,
            "stability": n.stability,
            "exemplars": [{"id": e, "text": cut(texts[e])} for e in exemplars],
            "members": [
                {"id": r["conversation_id"], "text": cut(r["text"]), "outlier": bool(r["is_outlier"])}
                for r in picked
            ],
        }
        if n.stability is not None:
            entry["unstable"] = n.unstable
        if refusals is not None:
            no, yes = refusals.get((n.id, False), 0), refusals.get((n.id, True), 0)
            entry["no_refusal"] = interval(no, no + yes)
        if models:
            entry["models"] = {
                m: interval(by_model.get((n.id, m), 0), model_totals.get(m, 0)) for m in models
            }
        nodes.append(entry)
    return {
        "format_version": SITE_FORMAT_VERSION,
        "run": _run_info(run, total),
        "models": models,
        "has_stability": has_stability,
        "has_refusal": refusals is not None,
        "unstable_below": UNSTABLE_BELOW,
        "nodes": nodes,
    }
