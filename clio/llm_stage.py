"""The LLM stage of ``bailclio run``: facet summaries before clustering, names after it.

With ``llm.backend`` set, :func:`bailclio.pipeline.run` uses one :class:`LLMStage`:

1. :meth:`LLMStage.facets` asks every facet of every conversation in one structured call
   (:mod:`bailclio.facets`), stores the answers as ``facet_<name>`` columns and returns the texts to
   cluster: the clustered facet's summary, or the rendered text for a row whose call failed (those
   rows are counted, never dropped).
2. :meth:`LLMStage.names` names the leaves and their parents (:mod:`bailclio.llm_naming`).

Every call goes through the back-end's SQLite cache, committed per call. Its default place is
``~/.cache/bailclio/llm/<backend>-<model>.sqlite`` (under ``BAILCLIO_CACHE_DIR`` when set; or
``llm.cache_path`` / ``--llm-cache``), outside the run directory, so a rerun into the same
``--out`` with ``--force`` makes no new calls, and a run killed at any moment resumes without
repeating a completed call. :meth:`LLMStage.manifest` gives ``manifest["llm"]``: per stage the
HTTP calls, cache hits, failures, retries, prompt and completion tokens and wall time.

A budget (``llm.max_calls``, ``llm.max_total_tokens``) stops the calls cleanly: the run finishes
with what it has (rows without a facet answer are clustered on their text, nodes without a name
keep their keyphrase name), says so on stderr and records ``budget_exhausted`` in the manifest.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio.config import Config, FacetConfig
from bailclio.errors import UserError
from bailclio.llm.base import LLMBackend
from bailclio.llm_naming import STAT_KEYS, NamingResult, name_hierarchy, stats_delta
from bailclio.paths import cache_root


def default_cache_path(cfg: Config) -> Path:
    """Where ``run`` keeps its LLM cache unless ``llm.cache_path`` says otherwise."""
    if cfg.llm.cache_path:
        return Path(cfg.llm.cache_path).expanduser()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cfg.llm.backend}-{cfg.llm.model}").strip("_")
    return cache_root("llm", f"{slug[-120:]}.sqlite")


log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    log.warning(msg)


class LLMStage:
    """Facets and names over one back-end: the configured one (``llm.backend``), or ``backend``,
    an instance the caller made and keeps (it is not closed here)."""

    def __init__(self, cfg: Config, *, progress: bool = True, backend: LLMBackend | None = None) -> None:
        from bailclio.llm import make_backend

        self.cfg = cfg
        try:
            self.facet: FacetConfig | None = cfg.cluster_facet()
        except ValueError as exc:
            raise UserError(f"config: {exc}") from exc
        if self.facet is None:
            raise UserError(
                "config: no facet to cluster (mark one facet with clustered = true or pass --facet)"
            )
        self.owns_backend = backend is None
        if backend is None:
            self.cache_path: Path | None = default_cache_path(cfg)
            backend = make_backend(cfg.llm, self.cache_path, progress=progress)
            assert backend is not None
        else:
            cache = getattr(backend, "cache_path", None) or getattr(
                getattr(backend, "cache", None), "path", None
            )
            self.cache_path = Path(cache) if cache else None
        self.backend = backend
        self.backend_name = str(getattr(backend, "name", cfg.llm.backend))
        self.model = str(getattr(backend, "model", None) or cfg.llm.model)
        self.stages: dict[str, dict[str, Any]] = {}
        self.facet_fallback_rows = 0

    # ---- stage 1 -------------------------------------------------------------------------------
    def facets(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        from bailclio.facets import bail_context, extract_facets

        cfg = self.cfg
        before = self.backend.stats()
        texts = frame["text"].to_list()
        turns = frame["conversation"].to_list() if "conversation" in frame.columns else [None] * len(texts)
        ctx_cols = [c for c in ("model", "bail_method", "journal") if c in frame.columns]
        records = frame.select(ctx_cols).to_dicts() if ctx_cols else [{} for _ in texts]
        res = extract_facets(
            self.backend,
            cfg.facets,
            texts,
            turns,
            [bail_context(r) for r in records],
            conversation_chars=cfg.llm.conversation_chars,
            max_tokens=cfg.llm.max_tokens,
            temperature=cfg.llm.temperature,
            max_attempts=cfg.llm.max_attempts,
        )
        columns = []
        for f in cfg.facets:
            dtype = pl.Int64 if f.type == "integer" else pl.String
            columns.append(pl.Series(f"facet_{f.name}", res.column(f.name), dtype=dtype))
        columns.append(pl.Series("facets_error", res.errors, dtype=pl.String))
        frame = frame.with_columns(columns)
        assert self.facet is not None
        summary = res.column(self.facet.name)
        cluster_texts = [s if s else t for s, t in zip(summary, texts, strict=True)]
        self.facet_fallback_rows = sum(not s for s in summary)
        reasons: dict[str, int] = {}
        for e in res.errors:
            if e is not None:
                key = e if len(e) <= 120 else e[:117] + "..."
                reasons[key] = reasons.get(key, 0) + 1
        self.stages["facets"] = {
            "rows": len(texts),
            "requests": res.distinct_requests,
            "ok_rows": len(texts) - res.n_failed,
            "failed_rows": res.n_failed,
            "clustered_on_text": self.facet_fallback_rows,
            "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10]),
            **stats_delta(before, self.backend.stats()),
        }
        if res.n_failed:
            _say(
                f"[bailclio] facets: {res.n_failed} of {len(texts)} rows have no facet answer "
                f"(clustered on their text instead); reasons in manifest.json llm.stages.facets"
            )
        return frame, cluster_texts

    # ---- stage 2 -------------------------------------------------------------------------------
    def names(
        self,
        *,
        summaries: list[str],
        space: np.ndarray,
        leaf_of_unique: np.ndarray,
        parents: list[np.ndarray],
        levels: list[dict[int, dict[str, Any]]],
        fixed_leaves: dict[int, str],
    ) -> NamingResult:
        result = name_hierarchy(
            self.backend,
            summaries=summaries,
            space=space,
            leaf_of_unique=leaf_of_unique,
            parents=parents,
            fallback=[{g: meta["name"] for g, meta in lvl.items()} for lvl in levels],
            fixed_leaves=fixed_leaves,
            cfg=self.cfg,
        )
        for level, st in result.stats.items():
            self.stages[f"names_{level}"] = st
        fallbacks = sum(st["keyphrase_fallbacks"] for st in result.stats.values())
        if fallbacks:
            _say(
                f"[bailclio] names: {fallbacks} nodes keep their keyphrase name "
                f"(name_source = 'keyphrases' in taxonomy.json; reasons in name_error)"
            )
        return result

    # ---- bookkeeping ---------------------------------------------------------------------------
    @property
    def budget_exhausted(self) -> bool:
        return bool(self.backend.budget_exhausted)

    def budget_message(self) -> str | None:
        if not self.budget_exhausted:
            return None
        llm = self.cfg.llm
        limits = []
        if llm.max_calls is not None:
            limits.append(f"llm.max_calls = {llm.max_calls}")
        if llm.max_total_tokens is not None:
            limits.append(f"llm.max_total_tokens = {llm.max_total_tokens}")
        return (
            f"LLM budget reached ({', '.join(limits)}): the run finished with what it had "
            f"({self.facet_fallback_rows} rows clustered on their text, unnamed nodes keep keyphrase "
            f"names); rerun with a larger budget to continue from the cache at {self.cache_path}"
        )

    def manifest(self) -> dict[str, Any]:
        total = {k: 0 for k in STAT_KEYS}
        for st in self.stages.values():
            for k in STAT_KEYS:
                total[k] += st.get(k, 0)
        total["wall_s"] = round(total["wall_s"], 3)
        return {
            "backend": self.backend_name,
            "model": self.model,
            "base_url": self.cfg.llm.base_url,
            "cache_path": str(self.cache_path) if self.cache_path else None,
            "facet": self.facet.name if self.facet else None,
            "facets": [f.name for f in self.cfg.facets],
            "budget_exhausted": self.budget_exhausted,
            "stages": self.stages,
            "total": total,
            "backend_stats": self.backend.stats(),
        }

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()
