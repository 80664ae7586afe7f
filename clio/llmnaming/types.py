"""The records the LLM wing passes around: node names, leaf evidence, candidates, the result.

:class:`~bailclio.stages.NodeName` is the one node-name type of the project (the namers'
interface); this package fills in its ``source`` (``"llm"``, ``"keyphrases"``, ``"fixed"``),
``error`` and ``extra`` (grounding and revision records).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bailclio.llm.base import STAT_KEYS
from bailclio.stages import NodeName

Stats = dict[str, Any]  # a level's statistics, as the manifest records them


@dataclass(frozen=True)
class LeafEvidence:
    """What the keyphrase namer found in a leaf: its distinctive terms and its most typical
    member. Revision may end an LLM description with them (:mod:`bailclio.llmnaming.revision`)."""

    keywords: Sequence[str]
    typical: str | None = None


@dataclass
class Candidate:
    """A text tried for a node: its ``kind`` (how it was made) and the name it would give.
    ``trimmed``: the description was cut to its first sentence."""

    node: int
    kind: str
    name: NodeName
    trimmed: bool = False


@dataclass
class NamingResult:
    """A name per node per level (top first), and each level's statistics by its label."""

    levels: list[dict[int, NodeName]]
    stats: dict[str, Stats] = field(default_factory=dict)
    # set when the levels above the leaves were rebuilt (bailclio.llmnaming.hierarchy): parents[d]
    # maps each node of level d + 1 to its parent at level d, as in bailclio.hierarchy.Hierarchy
    parents: list[np.ndarray] | None = None
    hierarchy_info: dict[str, Any] = field(default_factory=dict)


def level_name(level: int, depth: int) -> str:
    """``top``, ``leaf``, and ``intermediate`` (3 levels) or ``level<d>`` (other depths)."""
    if level == depth - 1:
        return "leaf"
    if level == 0:
        return "top"
    return "intermediate" if depth == 3 else f"level{level}"


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The back-end's counters between two of its ``stats()``."""
    out = {}
    for k in STAT_KEYS:
        v = after.get(k, 0) - before.get(k, 0)
        out[k] = round(v, 3) if k == "wall_s" else int(v)
    return out


def llm_name(name: str, description: str | None) -> NodeName:
    return NodeName(name, description, "llm")


def node_text(n: NodeName, fallback_descriptions: dict[int, str] | None = None, g: int | None = None) -> str:
    """The text a node is embedded by: its name and description (a node that keeps its
    keyphrase name: the keyphrase description in ``fallback_descriptions``)."""
    desc = n.description
    if desc is None and fallback_descriptions and g is not None:
        desc = fallback_descriptions.get(g)
    return f"{n.name}. {desc}" if desc else n.name


def inherit(child: NodeName) -> NodeName:
    """The name of a parent with a single child: the child's words describe it too."""
    return NodeName(child.name, child.description, child.source, child.error)


__all__ = [
    "Candidate",
    "LeafEvidence",
    "NamingResult",
    "NodeName",
    "inherit",
    "level_name",
    "llm_name",
    "node_text",
    "stats_delta",
]
