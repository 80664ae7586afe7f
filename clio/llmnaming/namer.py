"""LLM names and descriptions for every node of the taxonomy, leaves first, then their parents.

Leaves are named from their members against their nearest non-members
(:func:`~bailclio.llmnaming.requests.leaf_requests`): the reply is a two-sentence description
(asked first, so the members' concrete subjects are written down before the name) and a short
imperative name (:mod:`bailclio.llmnaming.replies`).

Parents: by default this module names the *structural* hierarchy of :mod:`bailclio.hierarchy`
(Ward cuts over the leaf centroids) instead of running Clio's hierarchizer (neighbourhoods ->
proposed parents -> dedupe -> LLM assignment of each child -> renaming). Why: the structure stays
computed without the LLM, so it is reproducible from the embeddings alone, costs one call per
parent (O(clusters) in all), and no reply, including one steered by a conversation that tries to
inject instructions, can move a child to another parent; the Ward cuts already give every child
exactly one parent and the configured level sizes. What the LLM adds is the words: each
intermediate and top node is named from its children's names and descriptions, contrasted with the
children of the nearest other parents of the same level. A parent with a single child takes that
child's name and description (no call). The cost is that parents group children by embedding
proximity rather than by the LLM's judgement of topic, which Clio's hierarchizer gives:
``naming.hierarchy = "llm"`` runs it (:mod:`bailclio.llmnaming.hierarchy`).

Checks (with a :class:`~bailclio.llmnaming.grounder.Grounder`): every LLM name must be nearer its
own members than its nearest siblings' (:mod:`bailclio.llmnaming.grounding`); then the leaves are
revised by Clio's reconstruction check and held to the reconstruction of their keyphrase texts
(:mod:`bailclio.llmnaming.revision`, :mod:`bailclio.llmnaming.fallback`).

Failures never become names: a node whose call fails (HTTP errors after retries, a reply that does
not validate after ``llm.max_attempts``, the budget) keeps its keyphrase name, with
``name_source = "keyphrases"`` and the reason in ``name_error``. Names are unique within a level:
a repeated name gets a deterministic `` (2)``, `` (3)`` suffix in node order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import LLMBackend
from bailclio.llmnaming.grounder import Grounder
from bailclio.llmnaming.grounding import LEAF_SUBJECT, PARENT_SUBJECT, ground
from bailclio.llmnaming.replies import Reply, ask
from bailclio.llmnaming.requests import DEFAULT_SUBJECT, leaf_requests, parent_requests
from bailclio.llmnaming.revision import revise
from bailclio.llmnaming.types import (
    LeafEvidence,
    NamingResult,
    NodeName,
    Stats,
    inherit,
    level_name,
    llm_name,
    stats_delta,
)


@dataclass
class LeafInputs:
    """What naming the leaves reads: the clustered texts (``summaries``) and their clustering
    ``space``, each text's leaf, the leaves' keyphrase names (``fallback``) and descriptions,
    the leaves no namer may rename, and the keyphrase namer's evidence per leaf."""

    summaries: Sequence[str]
    space: np.ndarray
    leaf_of_unique: np.ndarray
    fallback: dict[int, str]
    fixed_leaves: dict[int, str]
    fallback_descriptions: dict[int, str] | None = None
    leaf_evidence: dict[int, LeafEvidence] | None = None
    subject: str = DEFAULT_SUBJECT


def dedupe(level: dict[int, NodeName]) -> None:
    """Unique names within a level, in node order: a repeat gets `` (2)``, `` (3)``..."""
    taken: set[str] = set()
    for g in sorted(level):
        nn = level[g]
        base, name, k = nn.name, nn.name, 2
        while name.lower() in taken:
            name = f"{base} ({k})"
            k += 1
        nn.name = name
        taken.add(name.lower())


def finish(answers: dict[int, Reply], ids: list[int], fallback: dict[int, str]) -> dict[int, NodeName]:
    """Each node's LLM name, or its keyphrase name with the reason it has no LLM name."""
    out: dict[int, NodeName] = {}
    for g in ids:
        reply = answers.get(g, Reply(None, "not asked"))
        if reply.value is not None:
            out[g] = llm_name(reply.value.name, reply.value.description)
        else:
            out[g] = NodeName(fallback[g], None, "keyphrases", reply.error or "no reply")
    return out


def name_leaves(
    backend: LLMBackend,
    inputs: LeafInputs,
    cfg: Config,
    grounder: Grounder | None = None,
) -> tuple[dict[int, NodeName], Stats]:
    """LLM names of the leaves, grounded and revised when a ``grounder`` is given; and the leaf
    stage's statistics."""
    leaf_ids = sorted(inputs.fallback)
    before = backend.stats()
    todo = [g for g in leaf_ids if g not in inputs.fixed_leaves]
    reqs = leaf_requests(inputs.summaries, inputs.space, inputs.leaf_of_unique, todo, cfg, inputs.subject)
    first_ok: dict[str, int] = {}
    leaves = finish(ask(backend, reqs, cfg, "names: leaves", first_ok), todo, inputs.fallback)
    for g, name in inputs.fixed_leaves.items():
        leaves[g] = NodeName(name, None, "fixed")
    grounded: Stats = {}
    if grounder is not None:
        exclude = sorted(inputs.fixed_leaves)
        grounded = ground(
            backend, leaves, reqs, inputs.leaf_of_unique, grounder, cfg, inputs.fallback,
            desc="names: leaves", subject=LEAF_SUBJECT, exclude=exclude,
            fallback_descriptions=inputs.fallback_descriptions,
        )  # fmt: skip
        if cfg.naming.revision:
            grounded.update(
                revise(
                    backend,
                    leaves,
                    reqs,
                    inputs.summaries,
                    inputs.leaf_of_unique,
                    grounder,
                    cfg,
                    exclude=exclude,
                    fallback_descriptions=inputs.fallback_descriptions,
                    fallback=inputs.fallback,
                    evidence=inputs.leaf_evidence,
                )  # fmt: skip
            )
    dedupe(leaves)
    delta = stats_delta(before, backend.stats())
    return leaves, {"nodes": len(leaf_ids), "requests": len(reqs), **first_ok, **grounded, **delta}


def _name_parents(
    backend: LLMBackend,
    level: int,
    depth: int,
    children: dict[int, NodeName],
    child_map: np.ndarray,
    groups: np.ndarray,
    space: np.ndarray,
    fallback: dict[int, str],
    cfg: Config,
    grounder: Grounder | None,
) -> tuple[dict[int, NodeName], Stats]:
    """The nodes of one level above the leaves named from their ``children`` (``child_map``: the
    parent of each child; ``groups``: the node of each clustered text at this level)."""
    label = level_name(level, depth)
    before = backend.stats()
    ids = sorted(fallback)
    children_of = {p: [int(c) for c in np.flatnonzero(child_map == p)] for p in ids}
    cents = {p: space[groups == p].mean(axis=0) for p in ids}
    reqs = parent_requests(children_of, children, cents, cfg)
    first_ok: dict[str, int] = {}
    named = finish(ask(backend, reqs, cfg, f"names: {label}", first_ok), sorted(reqs), fallback)
    for p in ids:
        if p in named:
            continue
        kids = children_of[p]
        if len(kids) == 1:  # a single child: its words describe the parent too
            named[p] = inherit(children[kids[0]])
        else:
            named[p] = NodeName(fallback[p], None, "keyphrases", "no children")
    grounded: Stats = {}
    if grounder is not None:
        grounded = ground(
            backend, named, reqs, groups, grounder, cfg, fallback,
            desc=f"names: {label}", subject=PARENT_SUBJECT,
        )  # fmt: skip
    dedupe(named)
    delta = stats_delta(before, backend.stats())
    return named, {"nodes": len(ids), "requests": len(reqs), **first_ok, **grounded, **delta}


def name_hierarchy(
    backend: LLMBackend,
    inputs: LeafInputs,
    parents: list[np.ndarray],
    fallback: list[dict[int, str]],
    cfg: Config,
    grounder: Grounder | None = None,
) -> NamingResult:
    """Names for every level, leaves first (``parents[d]``: parent at level d of each node of level
    d + 1; ``fallback``: keyphrase names per level, top first; the leaves' are ``inputs.fallback``).
    With a ``grounder``, every LLM name is checked against its members before the level above is
    named."""
    depth = len(parents) + 1
    stats: dict[str, Stats] = {}
    leaves, stats["leaf"] = name_leaves(backend, inputs, cfg, grounder)
    levels: list[dict[int, NodeName]] = [{} for _ in range(depth - 1)] + [leaves]
    groups_of_unique: dict[int, np.ndarray] = {depth - 1: inputs.leaf_of_unique}
    for level in range(depth - 2, -1, -1):
        groups_of_unique[level] = parents[level][groups_of_unique[level + 1]]
    for level in range(depth - 2, -1, -1):
        levels[level], stats[level_name(level, depth)] = _name_parents(
            backend, level, depth, levels[level + 1], parents[level], groups_of_unique[level],
            inputs.space, fallback[level], cfg, grounder,
        )  # fmt: skip
    count_sources(levels, stats)
    return NamingResult(levels, stats)


def count_sources(levels: list[dict[int, NodeName]], stats: dict[str, Stats]) -> None:
    """``llm_named`` and ``keyphrase_fallbacks`` per level, into each level's statistics."""
    for level, nodes in enumerate(levels):
        st = stats.setdefault(level_name(level, len(levels)), {})
        st["llm_named"] = sum(n.source == "llm" for n in nodes.values())
        st["keyphrase_fallbacks"] = sum(n.source == "keyphrases" for n in nodes.values())


__all__ = ["LeafInputs", "count_sources", "dedupe", "finish", "name_hierarchy", "name_leaves"]
