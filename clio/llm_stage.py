"""The LLM stage of ``bailclio run``: facet summaries before clustering, names after it.

With ``llm.backend`` set, :func:`bailclio.pipeline.run` uses one :class:`LLMStage`:

1. :meth:`LLMStage.facets` asks every facet that fits each conversation in one structured call
   (:mod:`bailclio.facets`), stores the answers as ``facet_<name>`` columns and returns the texts to
   cluster. Those are the clustered facet's summaries, unless they carry no information: when the
   answers collapse (:mod:`bailclio.degeneracy`), or the facet fits no row, or more than
   ``llm.max_missing_share`` of the rows have no answer, every row is clustered on its rendered
   text (``llm.degenerate_fallback``). A few rows without an answer are clustered on their text in
   the facet's space, and the run says so (``clustering.clustered_on = "mixed"``). The choice and
   its reason are in ``manifest["llm"]["clustering"]``, the warnings in the printed summary.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio.config import Config, FacetConfig
from bailclio.errors import UserError
from bailclio.llm.base import LLMBackend
from bailclio.llm_naming import STAT_KEYS, LeafEvidence, NamingResult, name_hierarchy, stats_delta
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
        self.stages: dict[str, dict[str, Any]] = {}
        self.facet_fallback_rows = 0
        self.naming_failures = 0
        self.clustering: dict[str, Any] = {}
        self.grounding: dict[str, Any] = {}
        self.warnings: list[str] = []

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        _say(f"[bailclio] {msg}")

    # ---- stage 1 -------------------------------------------------------------------------------
    def facets(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        from bailclio.degeneracy import assess
        from bailclio.facets import applies, bail_context, choose_facet, extract_facets, row_kind

        cfg = self.cfg
        before = self.backend.stats()
        texts = frame["text"].to_list()
        turns = frame["conversation"].to_list() if "conversation" in frame.columns else [None] * len(texts)
        ctx_cols = [c for c in ("model", "bail_method", "bail_turn", "journal") if c in frame.columns]
        records = frame.select(ctx_cols).to_dicts() if ctx_cols else [{} for _ in texts]
        kinds = [row_kind(t, r) for t, r in zip(turns, records, strict=True)]
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
        columns = []
        for f in cfg.facets:
            dtype = pl.Int64 if f.type == "integer" else pl.String
            columns.append(pl.Series(f"facet_{f.name}", res.column(f.name), dtype=dtype))
        columns.append(pl.Series("facets_error", res.errors, dtype=pl.String))
        issues = ["; ".join(f"{k}: {v}" for k, v in i.items()) or None for i in res.issues]
        columns.append(pl.Series("facets_issues", issues, dtype=pl.String))
        frame = frame.with_columns(columns)

        # Per facet: who was asked, what came back, and whether the answers still differ.
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
                quality = assess(list(first.values()), n_copied=len(copied))
                entry["quality"] = quality.to_dict()
            per_facet[f.name] = entry

        summary = res.column(facet.name)
        info = per_facet[facet.name]
        missing = sum(not s for s in summary)
        quality = info.get("quality", {})
        space, reason = "facet", ""
        if info["asked_rows"] == 0:
            space, reason = "text", f"facet '{facet.name}' applies to none of the rows"
        elif quality.get("degenerate") and cfg.llm.degenerate_fallback != "facet":
            space = cfg.llm.degenerate_fallback
            reason = f"the answers of facet '{facet.name}' collapsed: " + "; ".join(quality["reasons"])
        elif missing and missing > cfg.llm.max_missing_share * len(texts):
            space = "text"
            reason = (
                f"{missing} of {len(texts)} rows have no '{facet.name}' answer "
                f"(above llm.max_missing_share = {cfg.llm.max_missing_share})"
            )
        elif missing:
            space = "mixed"
            reason = (
                f"{missing} of {len(texts)} rows have no '{facet.name}' answer and are clustered on "
                f"their rendered text, in the same space as {len(texts) - missing} facet summaries"
            )
        if space == "text":
            cluster_texts = list(texts)
        elif space == "text_and_facet":
            cluster_texts = [f"{s}\n{t}" if s else t for s, t in zip(summary, texts, strict=True)]
        else:
            cluster_texts = [s if s else t for s, t in zip(summary, texts, strict=True)]
        self.facet_fallback_rows = len(texts) if space == "text" else missing
        self.clustering = {
            "facet": facet.name,
            "facet_chosen_by": self.facet_chosen_by,
            "row_kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
            "clustered_on": space,
            "facet_rows": len(texts) - self.facet_fallback_rows,
            "text_rows": self.facet_fallback_rows,
            "reason": reason or None,
        }
        if reason:
            where = {"text": "their rendered text", "text_and_facet": "text plus facet", "mixed": "mixed"}
            self._warn(f"clustering on {where.get(space, space)}: {reason}")

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
            **res.stats,
            "per_facet": per_facet,
            **stats_delta(before, self.backend.stats()),
        }
        if res.n_failed:
            _say(
                f"[bailclio] facets: {res.n_failed} of {len(texts)} rows have no facet answer; "
                f"reasons in manifest.json llm.stages.facets"
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
        vectors: np.ndarray | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        keyphrases_for: Callable[[np.ndarray], dict[int, dict[str, Any]]] | None = None,
    ) -> NamingResult:
        """LLM names for every node; with ``vectors`` (the embeddings of ``summaries``), ``embed``
        (the model that made them) and ``naming.grounding`` on, each name is checked against its
        members (:mod:`bailclio.grounding`). With ``naming.hierarchy = "llm"`` and more than one
        level, the levels above the leaves are rebuilt by the LLM (:mod:`bailclio.llm_hierarchy`;
        ``keyphrases_for(groups)`` gives the keyphrase names of a new grouping) and the result's
        ``parents`` holds the new tree."""
        grounder = None
        if vectors is not None and embed is not None and self.cfg.naming.grounding:
            from bailclio.grounding import Grounder

            grounder = Grounder(
                vectors,
                embed,
                min_margin=self.cfg.naming.grounding_min_margin,
                siblings=self.cfg.naming.grounding_siblings,
            )
        fallback = [{g: meta["name"] for g, meta in lvl.items()} for lvl in levels]
        sizes = np.bincount(leaf_of_unique)  # distinct texts per leaf: near the rows' count
        leaf_desc = {
            g: meta["describe"](int(sizes[g])) for g, meta in levels[-1].items() if "describe" in meta
        }
        leaf_evidence = {
            g: LeafEvidence(
                list(meta["keywords"]), summaries[meta["exemplars"][0]] if meta.get("exemplars") else None
            )
            for g, meta in levels[-1].items()
            if meta.get("keywords")
        }
        if self.cfg.naming.hierarchy == "llm" and parents and keyphrases_for is not None:
            from bailclio.llm_hierarchy import build_and_name

            result = build_and_name(
                self.backend,
                summaries=summaries,
                space=space,
                leaf_of_unique=leaf_of_unique,
                parents=parents,
                leaf_fallback=fallback[-1],
                keyphrases_for=keyphrases_for,
                fixed_leaves=fixed_leaves,
                cfg=self.cfg,
                grounder=grounder,
                subject=self.subject(),
                fallback_descriptions=leaf_desc,
                leaf_evidence=leaf_evidence,
            )
        else:
            result = name_hierarchy(
                self.backend,
                summaries=summaries,
                space=space,
                leaf_of_unique=leaf_of_unique,
                parents=parents,
                fallback=fallback,
                fixed_leaves=fixed_leaves,
                cfg=self.cfg,
                grounder=grounder,
                subject=self.subject(),
                fallback_descriptions=leaf_desc,
                leaf_evidence=leaf_evidence,
            )
        for level, st in result.stats.items():
            self.stages[f"names_{level}"] = st
        # nodes left with keyphrase names because naming failed (not those whose LLM name did not
        # fit its members or described them worse: that is the grounding check working)
        self.naming_failures = sum(
            n.source == "keyphrases" and not str(n.error or "").startswith(("ungrounded", "reconstruction"))
            for level in result.levels
            for n in level.values()
        )
        checked = sum(st.get("grounding_checked", 0) for st in result.stats.values())
        if grounder is not None:
            ok = sum(
                st.get("grounded_first", 0) + st.get("grounded_after_retry", 0)
                for st in result.stats.values()
            )
            replaced = sum(st.get("replaced_ungrounded", 0) for st in result.stats.values())
            self.grounding = {
                "checked": checked,
                "grounded": ok,
                "grounded_share": round(ok / checked, 4) if checked else None,
                "grounded_first": sum(st.get("grounded_first", 0) for st in result.stats.values()),
                "replaced_by_keyphrases": replaced,
                "replaced_by_keyphrase_text": sum(
                    st.get("revisions_to_keyphrases", 0) for st in result.stats.values()
                ),
                "min_margin": self.cfg.naming.grounding_min_margin,
            }
            if replaced:
                self._warn(
                    f"names: {replaced} of {checked} LLM names did not fit their members after a retry and "
                    "were replaced by keyphrase names (name_error in taxonomy.json)"
                )
        leaf = result.stats.get("leaf", {})
        if leaf.get("revisions_to_keyphrases"):
            n = leaf["revisions_to_keyphrases"]
            self._warn(
                f"names: {n} {'leaf keeps its' if n == 1 else 'leaves keep their'} keyphrase text, which "
                "puts more members back than the LLM's name and description (name_error)"
            )
        after, kp = leaf.get("reconstruction_after"), leaf.get("reconstruction_keyphrases")
        if after is not None and kp is not None and after < kp:
            self._warn(
                f"names: the leaves' LLM names and descriptions put {after:.1%} of the members back "
                f"into their own leaf, their keyphrase texts {kp:.1%} (llm.stages.names_leaf)"
            )
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

    def incomplete_reasons(self) -> list[str]:
        """Why the LLM stage is only partly done (empty when every row got its facet answer and
        every node its LLM name): the run's ``status`` is then ``"incomplete"``."""
        out = []
        facets = self.stages.get("facets", {})
        failed = int(facets.get("failed_rows", 0))
        if failed:
            reasons = ", ".join(f"{k}: {v}" for k, v in list(facets.get("failure_reasons", {}).items())[:3])
            space = self.clustering.get("clustered_on")
            where = (
                "every row is clustered on its raw text"
                if space == "text"
                else "they are clustered on their raw text beside the summaries of the others"
            )
            out.append(
                f"{failed} of {facets.get('rows', failed)} rows have no facet answer ({reasons}); {where}"
            )
        unnamed = self.naming_failures
        if unnamed > 0:
            out.append(
                f"{unnamed} nodes keep their keyphrase name (LLM naming failed; name_error in taxonomy.json)"
            )
        if self.budget_exhausted:
            out.append("the LLM budget was reached")
        return out

    def subject(self) -> str:
        """What the namer is told the items it reads are."""
        if self.clustering.get("clustered_on") in ("facet", "mixed") and self.facet is not None:
            return f'Each item is one conversation\'s answer to the question "{self.facet.question}"'
        return "Each item is one conversation between a user and an AI assistant (its text)."

    def taxonomy_meta(self) -> dict[str, Any]:
        """What ``taxonomy.json`` says about the LLM stage."""
        out: dict[str, Any] = {"clustered_on": self.clustering.get("clustered_on")}
        if self.grounding:
            out["grounded_share"] = self.grounding["grounded_share"]
        return out

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
            "clustering": self.clustering,
            "grounding": self.grounding,
            "warnings": self.warnings,
            "budget_exhausted": self.budget_exhausted,
            "stages": self.stages,
            "total": total,
            "backend_stats": self.backend.stats(),
        }

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()
