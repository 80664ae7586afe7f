"""The first steps of the LLM hierarchy at one level: the structural groups of the children,
one proposed parent per group, and the proposals merged into categories
(:mod:`bailclio.llmnaming.hierarchy`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llmnaming.replies import ask
from bailclio.llmnaming.requests import parent_requests
from bailclio.llmnaming.types import NodeName, inherit, llm_name

# keyphrase names of a grouping of the clustered texts: {node: {"name": ...}}
Keyphrases = Callable[[np.ndarray], dict[int, dict[str, Any]]]
Embed = Callable[[list[str]], np.ndarray]


def _norm(name: str) -> str:
    return re.sub(r"[^\w]+", " ", name.lower()).strip()


def merge_proposals(proposals: dict[int, NodeName], embed: Embed | None, threshold: float) -> dict[int, int]:
    """Each proposing group -> the group whose proposal it is merged into (itself when kept)."""
    keys = sorted(proposals)
    vecs = None
    if embed is not None and len(keys) > 1:
        vecs = np.asarray(embed([proposals[k].name for k in keys]), dtype=np.float64)
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    into: dict[int, int] = {}
    kept: list[int] = []
    for i, k in enumerate(keys):
        target = k
        if proposals[k].source != "fixed":
            for j in kept:
                if proposals[j].source == "fixed":
                    continue
                same = _norm(proposals[j].name) == _norm(proposals[k].name)
                if same or (vecs is not None and float(vecs[i] @ vecs[keys.index(j)]) >= threshold):
                    target = j
                    break
        into[k] = target
        if target == k:
            kept.append(k)
    return into


def relabel(assign: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Number the parents 0.. by member count, largest first (ties by old number)."""
    ids = sorted(set(int(a) for a in assign))
    totals = {p: float(weights[assign == p].sum()) for p in ids}
    order = sorted(ids, key=lambda p: (-totals[p], p))
    mapping = {p: i for i, p in enumerate(order)}
    return np.array([mapping[int(a)] for a in assign], dtype=np.int64)


@dataclass
class Groups:
    """The structural groups of one level: each child's group (where most of its members are at
    this level), the children of each group, each text's group, and the children's row counts."""

    child_ids: list[int]
    group_of: dict[int, int]
    children_of: dict[int, list[int]]
    text_group: np.ndarray
    weights: np.ndarray

    @property
    def ids(self) -> list[int]:
        return sorted(self.children_of)


def structural_groups(child_ids: list[int], below: np.ndarray, structural: np.ndarray) -> Groups:
    weights = np.bincount(below, minlength=max(child_ids) + 1).astype(float)
    group_of = {c: int(np.argmax(np.bincount(structural[below == c]))) for c in child_ids}
    ids = sorted(set(group_of.values()))
    children_of = {g: [c for c in child_ids if group_of[c] == g] for g in ids}
    text_group = np.array([group_of[int(c)] for c in below])
    return Groups(child_ids, group_of, children_of, text_group, weights)


@dataclass
class Categories:
    """The merged proposals: each group's category, the names offered, and the centroids."""

    into: dict[int, int]  # proposing group -> the group its proposal was merged into
    of_group: dict[int, int]
    names: dict[int, NodeName]
    cents: dict[int, np.ndarray]


def propose(
    backend: LLMBackend, grp: Groups, kids: dict[int, NodeName], space: np.ndarray, cfg: Config, label: str
) -> tuple[dict[int, ChatRequest], dict[int, NodeName], dict[str, int]]:
    """One proposal per structural group: asked for two or more children, the child's name for
    one; a failed call proposes nothing (the group stays a category of its own, named later)."""
    cents = {g: space[grp.text_group == g].mean(axis=0) for g in grp.ids}
    reqs = parent_requests(grp.children_of, kids, cents, cfg)
    first_ok: dict[str, int] = {}
    answers = ask(backend, reqs, cfg, f"hierarchy: {label} proposals", first_ok)
    proposals: dict[int, NodeName] = {}
    for g in grp.ids:
        if g in reqs:
            value = answers[g].value if g in answers else None
            if value is not None:
                proposals[g] = llm_name(value.name, value.description)
        elif len(grp.children_of[g]) == 1:
            proposals[g] = inherit(kids[grp.children_of[g][0]])
    return reqs, proposals, first_ok


def categories(
    grp: Groups, proposals: dict[int, NodeName], embed: Embed | None, space: np.ndarray,
    keyphrases_for: Keyphrases, cfg: Config,
) -> Categories:  # fmt: skip
    into = merge_proposals(proposals, embed, cfg.naming.hierarchy_dedupe_similarity)
    of_group = {g: into.get(g, g) for g in grp.ids}
    cats = sorted(set(of_group.values()))
    cat_text = np.array([of_group[int(g)] for g in grp.text_group])
    cents = {k: space[cat_text == k].mean(axis=0) for k in cats}
    if any(k not in proposals for k in cats):  # a failed proposal: offered by its keyphrases
        words = keyphrases_for(grp.text_group)
        names = {k: proposals.get(k) or NodeName(words[k]["name"], None, "keyphrases") for k in cats}
    else:
        names = {k: proposals[k] for k in cats}
    return Categories(into, of_group, names, cents)


__all__ = [
    "Categories",
    "Groups",
    "Keyphrases",
    "categories",
    "merge_proposals",
    "propose",
    "relabel",
    "structural_groups",
]
