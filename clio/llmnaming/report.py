"""What the LLM stage reports: per stage its calls and counts, the clustering choice, the
grounding of the names, and the warnings, as ``manifest["llm"]`` records them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from bailclio.config import Config
from bailclio.llm.base import STAT_KEYS
from bailclio.llmnaming.types import NamingResult, Stats

log = logging.getLogger("bailclio.llmnaming.stage")


def say(msg: str) -> None:
    """A line on stderr (through logging), prefixed like every line of the run."""
    log.warning(f"[bailclio] {msg}")


@dataclass
class ClusteringChoice:
    """What the rows were clustered on (``facet``, ``text``, ``text_and_facet`` or ``mixed``) and
    why, when it is not the clustered facet's summaries."""

    facet: str | None
    facet_chosen_by: str
    row_kinds: dict[str, int]
    clustered_on: str
    facet_rows: int
    text_rows: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GroundingReport:
    """How many LLM names were checked against their members, and what became of them."""

    checked: int
    grounded: int
    grounded_share: float | None
    grounded_first: int
    replaced_by_keyphrases: int
    replaced_by_keyphrase_text: int
    min_margin: float

    @classmethod
    def of(cls, result: NamingResult, min_margin: float) -> GroundingReport:
        st = result.stats.values()
        checked = sum(s.get("grounding_checked", 0) for s in st)
        ok = sum(s.get("grounded_first", 0) + s.get("grounded_after_retry", 0) for s in st)
        return cls(
            checked=checked,
            grounded=ok,
            grounded_share=round(ok / checked, 4) if checked else None,
            grounded_first=sum(s.get("grounded_first", 0) for s in st),
            replaced_by_keyphrases=sum(s.get("replaced_ungrounded", 0) for s in st),
            replaced_by_keyphrase_text=sum(s.get("revisions_to_keyphrases", 0) for s in st),
            min_margin=min_margin,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageReport:
    """The LLM stage's statistics (per stage: ``facets``, ``names_<level>``) and warnings."""

    stages: dict[str, Stats] = field(default_factory=dict)
    clustering: ClusteringChoice | None = None
    grounding: GroundingReport | None = None
    warnings: list[str] = field(default_factory=list)
    facet_fallback_rows: int = 0  # rows clustered on their text because they have no summary
    naming_failures: int = 0  # nodes left with keyphrase names because naming failed

    def warn(self, msg: str) -> None:
        """A warning kept for the manifest and the summary, and said now."""
        self.warnings.append(msg)
        say(msg)

    def total(self) -> dict[str, Any]:
        out = {k: 0 for k in STAT_KEYS}
        for st in self.stages.values():
            for k in STAT_KEYS:
                out[k] += st.get(k, 0)
        out["wall_s"] = round(out["wall_s"], 3)
        return out

    def incomplete_reasons(self, budget_exhausted: bool) -> list[str]:
        """Why the stage is only partly done: rows without a facet answer, nodes whose naming
        failed, the budget."""
        out = []
        facets = self.stages.get("facets", {})
        failed = int(facets.get("failed_rows", 0))
        if failed:
            reasons = ", ".join(f"{k}: {v}" for k, v in list(facets.get("failure_reasons", {}).items())[:3])
            space = self.clustering.clustered_on if self.clustering else None
            where = (
                "every row is clustered on its raw text"
                if space == "text"
                else "they are clustered on their raw text beside the summaries of the others"
            )
            out.append(
                f"{failed} of {facets.get('rows', failed)} rows have no facet answer ({reasons}); {where}"
            )
        if self.naming_failures > 0:
            out.append(
                f"{self.naming_failures} nodes keep their keyphrase name "
                "(LLM naming failed; name_error in taxonomy.json)"
            )
        if budget_exhausted:
            out.append("the LLM budget was reached")
        return out

    def record_names(self, result: NamingResult, cfg: Config, grounded: bool) -> None:
        """The naming statistics of ``result``, its failures and the warnings they call for."""
        for level, st in result.stats.items():
            self.stages[f"names_{level}"] = st
        # nodes left with keyphrase names because naming failed (not those whose LLM name did not
        # fit its members or described them worse: that is the grounding check working)
        self.naming_failures = sum(
            n.source == "keyphrases" and not str(n.error or "").startswith(("ungrounded", "reconstruction"))
            for level in result.levels
            for n in level.values()
        )
        if grounded:
            self.grounding = GroundingReport.of(result, cfg.naming.grounding_min_margin)
            replaced, checked = self.grounding.replaced_by_keyphrases, self.grounding.checked
            if replaced:
                self.warn(
                    f"names: {replaced} of {checked} LLM names did not fit their members after a retry and "
                    "were replaced by keyphrase names (name_error in taxonomy.json)"
                )
        leaf = result.stats.get("leaf", {})
        if leaf.get("revisions_to_keyphrases"):
            n = leaf["revisions_to_keyphrases"]
            self.warn(
                f"names: {n} {'leaf keeps its' if n == 1 else 'leaves keep their'} keyphrase text, which "
                "puts more members back than the LLM's name and description (name_error)"
            )
        after, kp = leaf.get("reconstruction_after"), leaf.get("reconstruction_keyphrases")
        if after is not None and kp is not None and after < kp:
            self.warn(
                f"names: the leaves' LLM names and descriptions put {after:.1%} of the members back "
                f"into their own leaf, their keyphrase texts {kp:.1%} (llm.stages.names_leaf)"
            )
        fallbacks = sum(st["keyphrase_fallbacks"] for st in result.stats.values())
        if fallbacks:
            say(
                f"names: {fallbacks} nodes keep their keyphrase name "
                f"(name_source = 'keyphrases' in taxonomy.json; reasons in name_error)"
            )


__all__ = ["ClusteringChoice", "GroundingReport", "StageReport", "say"]
