"""Label new conversations with an existing taxonomy, without rebuilding it.

New rows are read like any input (:func:`bailclio.ingest.read_input`), embedded with the run's own
embedding model (through the shared cache) and placed by the fitted :class:`~bailclio.Taxonomer`
(:meth:`~bailclio.Taxonomer.place`, see :mod:`bailclio.taxonomy.placement`): a row that fits no
leaf, farther from the run than the calibrated distance, is left unassigned (``leaf_id`` null).
The output table and its summary are :mod:`bailclio.taxonomy.assign_output`.

With ``--llm`` an LLM picks each row's leaf from a shortlist the embedding placement proposes, and
the embedding placement is the fallback when a call fails: see :mod:`bailclio.taxonomy.assign_llm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from bailclio.errors import UserError
from bailclio.taxonomer import Taxonomer
from bailclio.taxonomy.assign_llm import DEFAULT_SHORTLIST
from bailclio.taxonomy.assign_output import AssignResult, placement_frame
from bailclio.taxonomy.placement import (
    DEFAULT_K,
    DEFAULT_QUANTILE,
    Placement,
    Reference,
    run_embedding_config,
)

if TYPE_CHECKING:
    from bailclio.config import Config
    from bailclio.rundir import Run


def assign_input(
    run: Run,
    input_path: str | Path,
    *,
    method: str = "knn",
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    embedding_model: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    progress: bool = True,
    llm_config: Config | None = None,
    shortlist: int = DEFAULT_SHORTLIST,
) -> AssignResult:
    """Read, embed and place ``input_path``'s rows in ``run``'s taxonomy; with ``llm_config``
    (``llm.backend`` set) an LLM then picks each row's leaf from a shortlist
    (:mod:`bailclio.taxonomy.assign_llm`)."""
    from bailclio.ingest import read_input

    if (run.manifest.get("embedding") or {}).get("model_key") == "precomputed":
        raise UserError(
            f"{run.path}: the run was built on precomputed vectors; place new rows with "
            "Taxonomer.load(run).transform(rows, embeddings=...)"
        )
    run_embedding_config(run, embedding_model)  # a different model is refused before any work
    tx = Taxonomer.from_run(run, progress=progress)
    in_cfg = run.manifest.get("config", {}).get("input", {})
    ing = read_input(
        input_path,
        text_column=text_column,
        id_column=id_column,
        max_chars=int(in_cfg.get("max_chars") or 1000),
    )
    X, stats = tx.embed_new(ing.frame["text"].to_list())
    placement = tx.place(X, method=method, k=k, quantile=quantile)
    if llm_config is None or llm_config.llm.backend == "none":
        frame = placement_frame(run, ing.frame, placement)
        return AssignResult(
            frame, ing.rejects, placement.threshold, method, stats, None, placement.expected_placed
        )
    ref = tx.placement_reference()
    frame, report = llm_placement(run, ref, ing.frame, placement, llm_config, shortlist, progress)
    return AssignResult(
        frame, ing.rejects, placement.threshold, method, stats, report, placement.expected_placed
    )


def llm_placement(
    run: Run,
    ref: Reference,
    conv: pl.DataFrame,
    p: Placement,
    cfg: Config,
    shortlist: int,
    progress: bool,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The LLM's pick from each row's shortlist, the embedding placement where a call failed."""
    from bailclio.llm import make_backend
    from bailclio.llmnaming.stage import default_cache_path
    from bailclio.taxonomy.assign_llm import NONE, classify, shortlists

    if shortlist < 1:
        raise UserError("--shortlist must be at least 1")
    tax = run.taxonomy
    excluded = {n.id for n in tax.leaves if n.extra.get("is_outlier_node")}
    offered = [lf for lf in ref.leaves if lf not in excluded]
    if not offered:
        raise UserError(f"{run.path}: the run has no leaf but the outlier leaf to choose from")
    missing = [lf for lf in offered if lf not in tax.by_id]
    if missing:
        raise UserError(f"{run.path}: assignment names node '{missing[0]}', which is not in the taxonomy")
    lists = shortlists(ref.leaves, p.winner, p.votes, p.centroid_sim, shortlist, excluded)
    cache_path = default_cache_path(cfg)
    backend = make_backend(cfg.llm, cache_path, progress=progress)
    assert backend is not None
    try:
        texts = conv["text"].to_list()
        turns = conv["conversation"].to_list() if "conversation" in conv.columns else [None] * len(texts)
        choices = classify(backend, tax, texts, turns, lists, cfg.llm)
        llm_stats = backend.stats()
        budget = backend.budget_exhausted
    finally:
        backend.close()
    embedding_ids = list(p.leaf_ids)
    leaf_ids: list[str | None] = []
    how: list[str] = []
    llm_ids: list[str | None] = []
    for emb, ans in zip(embedding_ids, choices.answers, strict=True):
        if ans is None:  # failed: the embedding placement stands
            leaf_ids.append(emb)
            how.append("embedding" if emb is not None else "unassigned")
            llm_ids.append(None)
        elif ans == NONE:
            leaf_ids.append(None)
            how.append("unassigned")
            llm_ids.append(None)
        else:
            leaf_ids.append(ans)
            how.append("llm")
            llm_ids.append(ans)
    unassigned = np.array([lf is None for lf in leaf_ids], dtype=bool)
    final = Placement(
        leaf_ids=leaf_ids,
        distance=p.distance,
        confidence=p.confidence,
        unassigned=unassigned,
        is_outlier=unassigned | p.neighbour_outlier,
        xy=p.xy,
        threshold=p.threshold,
    )
    extra = [
        pl.Series("embedding_leaf_id", embedding_ids, dtype=pl.String),
        pl.Series("llm_leaf_id", llm_ids, dtype=pl.String),
        pl.Series("placement", how, dtype=pl.String),
        pl.Series("llm_error", choices.errors, dtype=pl.String),
    ]
    frame = placement_frame(run, conv, final, extra)
    placed = sum(h == "llm" for h in how)
    report = {
        "backend": cfg.llm.backend,
        "model": cfg.llm.model,
        "cache_path": str(cfg.llm.cache_path or cache_path),
        "rows": len(how),
        "requests": choices.distinct_requests,
        "shortlist": shortlist,
        "placed": placed,
        "disagreed": sum(
            h == "llm" and lf != emb for h, lf, emb in zip(how, leaf_ids, embedding_ids, strict=True)
        ),
        "none": sum(a == NONE for a in choices.answers),
        "failed": sum(a is None for a in choices.answers),
        "budget_exhausted": budget,
        "stats": llm_stats,
    }
    return frame, report
