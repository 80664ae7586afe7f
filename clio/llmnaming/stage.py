"""The LLM stage of ``bailclio run``: facet summaries before clustering, names after it.

With ``llm.backend`` set, :func:`bailclio.pipeline.run` uses one :class:`LLMStage`:

1. :meth:`LLMStage.facets` asks every facet that fits each conversation in one structured call
   (:mod:`bailclio.llmnaming.facet_extract`), stores the answers as ``facet_<name>`` columns and
   returns the texts to cluster: the clustered facet's summaries, unless they carry no
   information (:mod:`bailclio.llmnaming.facet_space`). The choice and its reason are in
   ``manifest["llm"]["clustering"]``, the warnings in the printed summary.
2. :meth:`LLMStage.names` names the leaves and their parents (:mod:`bailclio.llmnaming.namer`).

Every call goes through the back-end's SQLite cache, committed per call. Its default place is
``~/.cache/bailclio/llm/<backend>-<model>.sqlite`` (under ``BAILCLIO_CACHE_DIR`` when set; or
``llm.cache_path`` / ``--llm-cache``), outside the run directory, so a rerun into the same
``--out`` with ``--force`` makes no new calls, and a run killed at any moment resumes without
repeating a completed call. :meth:`LLMStage.manifest` gives ``manifest["llm"]``: per stage the
HTTP calls, cache hits, failures, retries, prompt and completion tokens and wall time
(:class:`~bailclio.llmnaming.report.StageReport`).

A budget (``llm.max_calls``, ``llm.max_total_tokens``) stops the calls cleanly: the run finishes
with what it has (rows without a facet answer are clustered on their text, nodes without a name
keep their keyphrase name), says so on stderr and records ``budget_exhausted`` in the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio.config import Config, FacetConfig
from bailclio.errors import UserError
from bailclio.llm.base import LLMBackend
from bailclio.llmnaming.facet_extract import extract_facets
from bailclio.llmnaming.facet_space import (
    choose_space,
    cluster_texts_for,
    facet_columns,
    failure_reasons,
    per_facet_report,
    rows_of,
)
from bailclio.llmnaming.facets import bail_context, choose_facet
from bailclio.llmnaming.grounder import Grounder
from bailclio.llmnaming.hierarchy import Keyphrases, build_and_name
from bailclio.llmnaming.namer import LeafInputs, name_hierarchy
from bailclio.llmnaming.names_only import names_only_config, subject_of, texts_only_choice
from bailclio.llmnaming.report import ClusteringChoice, StageReport, say
from bailclio.llmnaming.types import LeafEvidence, NamingResult, stats_delta
from bailclio.paths import cache_root


def default_cache_path(cfg: Config) -> Path:
    """Where ``run`` keeps its LLM cache unless ``llm.cache_path`` says otherwise."""
    if cfg.llm.cache_path:
        return Path(cfg.llm.cache_path).expanduser()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cfg.llm.backend}-{cfg.llm.model}").strip("_")
    return cache_root("llm", f"{slug[-120:]}.sqlite")


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
        self.facet_chosen_by = "config" if self.facet is not None else "input"
        if not any(f.type == "text" for f in cfg.facets):
            raise UserError("config: no text facet to cluster (declare one in [[facets]])")
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
        self.report = StageReport()
        self.naming_cfg = names_only_config(cfg) if cfg.llm.names_only else cfg
        if cfg.llm.names_only:
            self.facet = None  # nothing is asked of the rows

    @property
    def facet_fallback_rows(self) -> int:
        return self.report.facet_fallback_rows

    # ---- stage 1 -------------------------------------------------------------------------------
    def facets(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        """The frame with its ``facet_<name>`` columns, and the texts to cluster."""
        if self.cfg.llm.names_only:
            texts, _, _, kinds = rows_of(frame)
            self.report.clustering = texts_only_choice(kinds)
            self.report.stages["facets"] = {"rows": len(texts), "requests": 0, "skipped": "llm.names_only"}
            return frame, list(texts)
        cfg = self.cfg
        before = self.backend.stats()
        texts, turns, records, kinds = rows_of(frame)
        if self.facet is None:
            self.facet = choose_facet(cfg.facets, kinds)
        facet = self.facet
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
            kinds=kinds,
        )
        frame = frame.with_columns(facet_columns(cfg, res))
        per_facet = per_facet_report(cfg, res, kinds)
        summary = res.column(facet.name)
        space, reason = choose_space(cfg, facet, per_facet[facet.name], summary)
        missing = sum(not s for s in summary)
        report = self.report
        report.facet_fallback_rows = len(texts) if space == "text" else missing
        report.clustering = ClusteringChoice(
            facet=facet.name,
            facet_chosen_by=self.facet_chosen_by,
            row_kinds={k: kinds.count(k) for k in sorted(set(kinds))},
            clustered_on=space,
            facet_rows=len(texts) - report.facet_fallback_rows,
            text_rows=report.facet_fallback_rows,
            reason=reason or None,
        )
        if reason:
            where = {"text": "their rendered text", "text_and_facet": "text plus facet", "mixed": "mixed"}
            report.warn(f"clustering on {where.get(space, space)}: {reason}")
        report.stages["facets"] = {
            "rows": len(texts),
            "requests": res.distinct_requests,
            "ok_rows": len(texts) - res.n_failed,
            "failed_rows": res.n_failed,
            "clustered_on_text": report.facet_fallback_rows,
            "failure_reasons": failure_reasons(res.errors),
            **res.stats,
            "per_facet": per_facet,
            **stats_delta(before, self.backend.stats()),
        }
        if res.n_failed:
            say(
                f"facets: {res.n_failed} of {len(texts)} rows have no facet answer; "
                f"reasons in manifest.json llm.stages.facets"
            )
        return frame, cluster_texts_for(space, summary, texts)

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
        vectors: np.ndarray | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        keyphrases_for: Keyphrases | None = None,
    ) -> NamingResult:
        """LLM names for every node; with ``vectors`` (the embeddings of ``summaries``), ``embed``
        (the model that made them) and ``naming.grounding`` on, each name is checked against its
        members (:mod:`bailclio.llmnaming.grounding`). With ``naming.hierarchy = "llm"`` and more
        than one level, the levels above the leaves are rebuilt by the LLM
        (:mod:`bailclio.llmnaming.hierarchy`; ``keyphrases_for(groups)`` gives the keyphrase names
        of a new grouping) and the result's ``parents`` holds the new tree."""
        grounder = None
        if vectors is not None and embed is not None and self.cfg.naming.grounding:
            grounder = Grounder(
                vectors,
                embed,
                min_margin=self.cfg.naming.grounding_min_margin,
                siblings=self.cfg.naming.grounding_siblings,
            )
        fallback = [{g: meta["name"] for g, meta in lvl.items()} for lvl in levels]
        sizes = np.bincount(leaf_of_unique)  # distinct texts per leaf: near the rows' count
        inputs = LeafInputs(
            summaries=summaries,
            space=space,
            leaf_of_unique=leaf_of_unique,
            fallback=fallback[-1],
            fixed_leaves=fixed_leaves,
            fallback_descriptions={
                g: meta["describe"](int(sizes[g])) for g, meta in levels[-1].items() if "describe" in meta
            },
            leaf_evidence={
                g: LeafEvidence(
                    list(meta["keywords"]), summaries[meta["exemplars"][0]] if meta.get("exemplars") else None
                )
                for g, meta in levels[-1].items()
                if meta.get("keywords")
            },
            subject=self.subject(),
        )
        cfg = self.naming_cfg
        if cfg.naming.hierarchy == "llm" and parents and keyphrases_for is not None:
            result = build_and_name(self.backend, inputs, parents, keyphrases_for, cfg, grounder)
        else:
            result = name_hierarchy(self.backend, inputs, parents, fallback, cfg, grounder)
        self.report.record_names(result, self.cfg, grounded=grounder is not None)
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

    def incomplete_reasons(self) -> list[str]:
        """Why the LLM stage is only partly done (empty when every row got its facet answer and
        every node its LLM name): the run's ``status`` is then ``"incomplete"``."""
        return self.report.incomplete_reasons(self.budget_exhausted)

    def subject(self) -> str:
        """What the namer is told the items it reads are."""
        clustering = self.report.clustering
        if (
            clustering is not None
            and clustering.clustered_on in ("facet", "mixed")
            and self.facet is not None
        ):
            return f'Each item is one conversation\'s answer to the question "{self.facet.question}"'
        if self.cfg.llm.names_only and clustering is not None:
            return subject_of(clustering.row_kinds)
        return "Each item is one conversation between a user and an AI assistant (its text)."

    def taxonomy_meta(self) -> dict[str, Any]:
        """What ``taxonomy.json`` says about the LLM stage."""
        clustering = self.report.clustering
        out: dict[str, Any] = {"clustered_on": clustering.clustered_on if clustering else None}
        if self.report.grounding is not None:
            out["grounded_share"] = self.report.grounding.grounded_share
        return out

    def manifest(self) -> dict[str, Any]:
        report = self.report
        return {
            "backend": self.backend_name,
            "model": self.model,
            "base_url": self.cfg.llm.base_url,
            "cache_path": str(self.cache_path) if self.cache_path else None,
            "facet": self.facet.name if self.facet else None,
            "facets": [] if self.cfg.llm.names_only else [f.name for f in self.cfg.facets],
            "names_only": self.cfg.llm.names_only,
            "clustering": report.clustering.to_dict() if report.clustering else {},
            "grounding": report.grounding.to_dict() if report.grounding else {},
            "warnings": report.warnings,
            "budget_exhausted": self.budget_exhausted,
            "stages": report.stages,
            "total": report.total(),
            "backend_stats": self.backend.stats(),
        }

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()


__all__ = ["LLMStage", "default_cache_path"]
