"""Clio's LLM-built hierarchy (``naming.hierarchy = "llm"``): parents proposed, merged and assigned
by the model, level by level from the leaves up.

The structural hierarchy (:mod:`bailclio.hierarchy`, any depth) gives the number of levels and
a first grouping; then, for each level above the leaves, from the bottom:

1. **Propose.** Each structural group of children (the nodes of the level below, already named)
   is shown to the LLM by its children's names and descriptions, contrasted with the children of
   the nearest other groups, and the model proposes one parent category (name and two-sentence
   description; the same prompt as :func:`bailclio.llmnaming.requests.parent_requests`). A group with a
   single child proposes that child's name (no call); a failed call proposes nothing.
2. **Deduplicate.** Proposals whose names are equal (case and punctuation aside), or at least
   ``naming.hierarchy_dedupe_similarity`` alike by the embedding model, are merged into the first
   of them (in node order, largest first).
3. **Assign.** The children are sent in batches of ``naming.hierarchy_assign_batch``, each with
   the ``naming.hierarchy_candidates`` merged categories nearest to them (always including their
   structural parent's), and the model returns the category number of every child. A reply is
   valid only when it names every child of the batch exactly once and only categories it was
   offered; it is asked again up to ``llm.max_attempts`` times. A batch that never validates (or
   whose call fails) keeps every child under its structural parent's category, with the reason in
   the level's statistics (``assign_failed_batches``, ``assign_errors``) and in the child's
   ``parent_source = "structural"`` / ``parent_error``; the fixed outlier leaf is never sent.
4. **Rename and ground.** A category left without children is dropped; one whose children are no
   longer those its name was proposed from is named again from its actual children (one child:
   that child's name). Every LLM name is then checked against the category's members like any
   other (:mod:`bailclio.llmnaming.grounding`: retried once with the failure stated, then the keyphrase
   name of the new grouping, flagged), and names are made unique within the level.

At the top level, children the model moved into a category that would then hold more than
``[hierarchy] top_max_share`` of the rows go back to their structural category
(``parent_error`` says so), the rule the structural tree keeps.

The parents of the next level up are proposed from the structural groups the new categories
mostly fall in (by member count), so the depth stays the structural one; a level can end with
fewer nodes than the structural level (merged or emptied categories), never more. Nodes are
numbered largest first. Each level costs one call per structural group with two or more children,
one per assignment batch (more on retries) and one per renamed category.

The model decides which parent a child goes to, so a reply can move a child (as Clio's
hierarchizer does); a reply cannot add a child, drop one, or invent a category: those replies are
invalid and the structural parent stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llmnaming.assignment import Assigned, assign_children, batches, limit_top_share
from bailclio.llmnaming.grounder import Grounder
from bailclio.llmnaming.grounding import PARENT_SUBJECT, ground
from bailclio.llmnaming.namer import LeafInputs, count_sources, dedupe, finish, name_leaves
from bailclio.llmnaming.proposals import (
    Categories,
    Groups,
    Keyphrases,
    categories,
    propose,
    relabel,
    structural_groups,
)
from bailclio.llmnaming.replies import ask
from bailclio.llmnaming.requests import parent_requests
from bailclio.llmnaming.types import NamingResult, NodeName, Stats, inherit, level_name, stats_delta


def _rename(
    backend: LLMBackend,
    assigned: Assigned,
    grp: Groups,
    cat: Categories,
    proposals: dict[int, NodeName],
    reqs: dict[int, ChatRequest],
    kids: dict[int, NodeName],
    below: np.ndarray,
    space: np.ndarray,
    keyphrases_for: Keyphrases,
    cfg: Config,
    level: int,
    label: str,
) -> tuple[dict[int, NodeName], dict[int, ChatRequest], dict[int, str], np.ndarray, int]:
    """The new categories numbered largest first and named: a category holding the children its
    proposal was made from keeps that name, one child gives its name, the others are asked
    again. Returns names, the requests that made them, keyphrase fallbacks, each child's new
    parent, and how many were renamed."""
    child_ids = grp.child_ids
    if child_ids != list(range(len(child_ids))):
        raise ValueError(f"level {level + 1}: node numbers are not 0..{len(child_ids) - 1}")
    new_of_child = relabel(np.array([assigned.category[c] for c in child_ids]), grp.weights[child_ids])
    cat_of_new = {int(p): assigned.category[c] for c, p in zip(child_ids, new_of_child, strict=True)}
    below_up = new_of_child[below]
    members = {p: [c for c in child_ids if new_of_child[c] == p] for p in cat_of_new}
    named: dict[int, NodeName] = {}
    final_reqs: dict[int, ChatRequest] = {}
    rename: list[int] = []
    for p, k in cat_of_new.items():
        mine = members[p]
        sources = [g for g in grp.ids if cat.of_group[g] == k]
        if len(mine) == 1:
            named[p] = inherit(kids[mine[0]])
        elif sources == [k] and k in reqs and k in proposals and mine == grp.children_of[k]:
            named[p] = proposals[k]  # the children its name was proposed from
            final_reqs[p] = reqs[k]
        else:
            rename.append(p)
    fallback = {p: meta["name"] for p, meta in keyphrases_for(below_up).items()}
    if rename:
        r_cents = {p: space[below_up == p].mean(axis=0) for p in cat_of_new}
        r_reqs_all = parent_requests(members, kids, r_cents, cfg)
        r_reqs = {p: r_reqs_all[p] for p in rename}
        named.update(finish(ask(backend, r_reqs, cfg, f"hierarchy: {label} names"), sorted(r_reqs), fallback))
        final_reqs.update(r_reqs)
    for p in cat_of_new:
        if p not in named:
            named[p] = NodeName(fallback[p], None, "keyphrases", "no children named")
    return named, final_reqs, fallback, new_of_child.astype(np.int64), len(rename)


@dataclass
class LevelBuilt:
    names: dict[int, NodeName]
    parent_of_child: np.ndarray
    stats: Stats


def _build_level(
    backend: LLMBackend,
    level: int,
    kids: dict[int, NodeName],
    below: np.ndarray,
    structural: np.ndarray,
    fixed_children: set[int],
    space: np.ndarray,
    keyphrases_for: Keyphrases,
    cfg: Config,
    grounder: Grounder | None,
    label: str,
) -> LevelBuilt:
    """Propose, merge, assign, rename and ground one level above ``kids`` (the nodes below, whose
    text-to-node map is ``below``; ``structural``: each text's structural node at this level)."""
    before = backend.stats()
    grp = structural_groups(sorted(kids), below, structural)
    reqs, proposals, first_ok = propose(backend, grp, kids, space, cfg, label)
    embed = grounder.embed if grounder is not None else None
    cat = categories(grp, proposals, embed, space, keyphrases_for, cfg)
    structural_cat = {c: cat.of_group[grp.group_of[c]] for c in grp.child_ids}
    movable = [c for c in grp.child_ids if c not in fixed_children]
    centre_of = {c: space[below == c].mean(axis=0) for c in movable}
    batched = batches(movable, structural_cat, sorted(cat.cents), cat.cents, centre_of, cfg)
    assigned = assign_children(backend, batched, kids, cat.names, structural_cat, cfg, label)
    if level == 0:  # the top level keeps the structural tree's rule on its largest node
        limit_top_share(assigned, structural_cat, grp.weights, cfg)
    for c in grp.child_ids:
        kids[c].extra["parent_source"] = assigned.source[c]
        if c in assigned.error:
            kids[c].extra["parent_error"] = assigned.error[c]
    moved = sum(assigned.category[c] != structural_cat[c] for c in grp.child_ids)
    named, final_reqs, fallback, new_of_child, renamed = _rename(
        backend, assigned, grp, cat, proposals, reqs, kids, below, space, keyphrases_for, cfg,
        level, label,
    )  # fmt: skip
    grounded: Stats = {}
    if grounder is not None:
        grounded = ground(
            backend, named, final_reqs, new_of_child[below], grounder, cfg, fallback,
            desc=f"hierarchy: {label}", subject=PARENT_SUBJECT,
        )  # fmt: skip
    dedupe(named)
    stats = {
        "nodes": len(named),
        "structural_nodes": len(grp.ids),
        "proposal_requests": len(reqs),
        "proposals": len(proposals),
        "merged_proposals": sum(1 for g, k in cat.into.items() if g != k),
        "assign_requests": assigned.requests,
        "assign_first_attempt_valid": assigned.first_attempt_valid,
        "assign_failed_batches": assigned.failed_batches,
        "assign_errors": assigned.errors[:5],
        "children_assigned_by_llm": sum(s == "llm" for s in assigned.source.values()),
        "children_moved": int(moved),
        "renamed": renamed,
        "requests": len(reqs) + assigned.requests + renamed,
        **{f"proposal_{k}": v for k, v in first_ok.items()},
        **grounded,
        **stats_delta(before, backend.stats()),
    }
    return LevelBuilt(named, new_of_child, stats)


def build_and_name(
    backend: LLMBackend,
    inputs: LeafInputs,
    parents: list[np.ndarray],
    keyphrases_for: Keyphrases,
    cfg: Config,
    grounder: Grounder | None = None,
) -> NamingResult:
    """Leaves named as by :func:`bailclio.llmnaming.namer.name_hierarchy`, then every level above
    them built and named by the LLM (see the module docstring). ``parents`` is the structural
    hierarchy (``parents[d]``: the level-d parent of each node of level d + 1);
    ``keyphrases_for(groups)`` gives the keyphrase names of a grouping of the texts (the fallback
    of a new node). The result's ``parents`` is the hierarchy built."""
    depth = len(parents) + 1
    stats: dict[str, Stats] = {}
    leaves, stats["leaf"] = name_leaves(backend, inputs, cfg, grounder)
    structural = [np.asarray(inputs.leaf_of_unique)]  # structural node of every text, per level
    for p in reversed(parents):
        structural.append(p[structural[-1]])
    structural = structural[::-1]
    levels: list[dict[int, NodeName]] = [{} for _ in range(depth - 1)] + [leaves]
    new_parents: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * (depth - 1)
    below = np.asarray(inputs.leaf_of_unique)  # node of every text at the level below (new numbering)
    for level in range(depth - 2, -1, -1):
        label = level_name(level, depth)
        built = _build_level(
            backend, level, levels[level + 1], below, structural[level], set(inputs.fixed_leaves),
            inputs.space, keyphrases_for, cfg, grounder, label,
        )  # fmt: skip
        levels[level], new_parents[level], stats[label] = built.names, built.parent_of_child, built.stats
        below = built.parent_of_child[below]
    count_sources(levels, stats)
    info: dict[str, Any] = {
        "built_by": "llm",
        "structural_sizes": [int(parents[0].max()) + 1] + [len(p) for p in parents],
    }
    return NamingResult(levels, stats, parents=new_parents, hierarchy_info=info)


__all__ = ["Keyphrases", "LevelBuilt", "build_and_name"]
