"""Names-only mode (``llm.names_only``, ``--llm-names-only``): the LLM names the nodes and asks
nothing of the rows.

Without it the LLM stage makes one facet call per conversation before clustering: with a small
local model on a CPU that is hours for a few thousand rows. In names-only mode the rows are
clustered on their own rendered texts and the namer is shown those texts (escaped, like every
list of a prompt) instead of facet summaries, so the calls grow with the nodes, not the rows: one
per node named (a parent with one child takes its child's name), at most two tries of an invalid
reply, and one try of one grounding retry when the name does not fit its members. No revision
round and no LLM-built hierarchy, so a node costs at most three calls. See docs/llm-names.md.
"""

from __future__ import annotations

from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.llmnaming.report import ClusteringChoice

NAMES_ONLY_MAX_ATTEMPTS = 2  # tries of a naming reply; the grounding retry gets one


def names_only_config(cfg: Config) -> Config:
    """The settings names-only mode names with: the structural hierarchy, no revision round, one
    grounding retry of one sample, at most two tries of a naming reply."""
    if cfg.naming.hierarchy == "llm":
        raise UserError(
            'config: llm.names_only names the structural hierarchy; set naming.hierarchy = "structural"'
        )
    naming = cfg.naming.model_copy(update={"revision": False, "grounding_retry_samples": 1})
    attempts = min(cfg.llm.max_attempts, NAMES_ONLY_MAX_ATTEMPTS)
    llm = cfg.llm.model_copy(update={"max_attempts": attempts})
    return cfg.model_copy(update={"naming": naming, "llm": llm})


def texts_only_choice(kinds: list[str]) -> ClusteringChoice:
    """Every row clustered on its rendered text, as names-only mode does."""
    return ClusteringChoice(
        facet=None,
        facet_chosen_by="none (llm.names_only)",
        row_kinds={k: kinds.count(k) for k in sorted(set(kinds))},
        clustered_on="text",
        facet_rows=0,
        text_rows=len(kinds),
        reason="llm.names_only: no facet is asked; the LLM names the nodes from the rows' texts",
    )


def subject_of(kinds: dict[str, int]) -> str:
    """What the namer is told the items are, in names-only mode."""
    if set(kinds) == {"prompt"}:
        return "Each item is one request a user sent to an AI assistant (its text)."
    return "Each item is one conversation between a user and an AI assistant (its text)."


__all__ = ["NAMES_ONLY_MAX_ATTEMPTS", "names_only_config", "subject_of", "texts_only_choice"]
