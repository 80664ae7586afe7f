"""The naming requests: a leaf's members against its nearest non-members, a parent's children
against the children of the nearest other parents, and the variants a retry sends.

Leaves (as in Clio): each leaf is named from a sample of its members (the most central half,
then a seeded sample of the rest) and, for contrast, the members of the leaves whose centroids
are nearest in the clustering space, so the name says what sets the cluster apart. Parents are
named from their children's names and descriptions. Every list goes through
:func:`bailclio.llmnaming.delimiters.block`, which escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import ChatRequest
from bailclio.llmnaming.delimiters import block
from bailclio.llmnaming.prompts import LEAF_TASK, NAME_SCHEMA, NAMING_SYSTEM, PARENT_TASK
from bailclio.llmnaming.types import NodeName

RETRY_TEMPERATURE = 0.7  # the sampled grounding and revision retries
DEFAULT_SUBJECT = "Each item is a summary of one conversation."


def naming_request(task: str, blocks: list[str], cfg: Config, tag: str) -> ChatRequest:
    """A naming request: the system prompt, then the tagged blocks and the task."""
    return ChatRequest(
        messages=[
            {"role": "system", "content": NAMING_SYSTEM},
            {"role": "user", "content": "\n\n".join([*blocks, task])},
        ],
        max_tokens=cfg.llm.max_tokens,
        temperature=cfg.llm.temperature,
        seed=cfg.seed,
        json_schema=NAME_SCHEMA,
        schema_name="ClusterName",
        tag=tag,
    )


def centroids(space: np.ndarray, groups: np.ndarray, ids: list[int]) -> np.ndarray:
    return np.stack([space[groups == g].mean(axis=0) for g in ids])


def nearest_others(cents: np.ndarray, i: int) -> list[int]:
    """The other rows of ``cents``, nearest to row ``i`` first."""
    d = np.linalg.norm(cents - cents[i], axis=1)
    return [int(j) for j in np.argsort(d, kind="stable") if j != i]


def by_centrality(space: np.ndarray, members: np.ndarray) -> np.ndarray:
    c = space[members].mean(axis=0)
    return members[np.argsort(np.linalg.norm(space[members] - c, axis=1), kind="stable")]


def _sampled_members(members: np.ndarray, n_mem: int, seed: int, g: int) -> np.ndarray:
    """The most central half, then a seeded sample of the rest (all when there are few)."""
    if len(members) <= n_mem:
        return members
    head = members[: (n_mem + 1) // 2]
    rng = np.random.default_rng([seed, g])
    rest = rng.choice(members[len(head) :], size=n_mem - len(head), replace=False)
    return np.concatenate([head, np.sort(rest)])


def _contrast(ordered: dict[int, np.ndarray], neighbours: list[int], n_con: int) -> list[int]:
    """Up to ``n_con`` items of the neighbouring leaves, round-robin from their most central."""
    contrast: list[int] = []
    depth = 0
    while len(contrast) < n_con and neighbours:
        added = False
        for h in neighbours:
            if depth < len(ordered[h]) and len(contrast) < n_con:
                contrast.append(int(ordered[h][depth]))
                added = True
        if not added:
            break
        depth += 1
    return contrast


def leaf_requests(
    summaries: Sequence[str],
    space: np.ndarray,
    leaf_of_unique: np.ndarray,
    leaf_ids: list[int],
    cfg: Config,
    subject: str = DEFAULT_SUBJECT,
) -> dict[int, ChatRequest]:
    """One request per leaf in ``leaf_ids``: sampled members plus nearest non-members;
    ``subject`` says what the items are."""
    all_ids = sorted(int(g) for g in np.unique(leaf_of_unique))
    cents = centroids(space, leaf_of_unique, all_ids)
    ordered = {g: by_centrality(space, np.flatnonzero(leaf_of_unique == g)) for g in all_ids}
    n_mem, n_con, chars = cfg.naming.llm_members, cfg.naming.llm_contrast, cfg.naming.llm_summary_chars
    out: dict[int, ChatRequest] = {}
    for g in leaf_ids:
        members = _sampled_members(ordered[g], n_mem, cfg.seed, g)
        neighbours = [all_ids[j] for j in nearest_others(cents, all_ids.index(g))][:3]
        contrast = _contrast(ordered, neighbours, n_con)
        blocks = [
            block("members", [summaries[i] for i in members], chars),
            block("nearby", [summaries[i] for i in contrast], chars),
        ]
        out[g] = naming_request(LEAF_TASK.format(subject=subject), blocks, cfg, f"leaf {g}")
    return out


def child_item(n: NodeName) -> str:
    """A child as a parent's prompt lists it: ``name: description``."""
    return f"{n.name}: {n.description}" if n.description else n.name


def parent_requests(
    children_of: dict[int, list[int]],
    child_names: dict[int, NodeName],
    cents: dict[int, np.ndarray],
    cfg: Config,
) -> dict[int, ChatRequest]:
    """One request per parent with two or more children: children named, nearest parents' children
    as contrast."""
    parents = sorted(children_of)
    stacked = np.stack([cents[p] for p in parents])
    chars = cfg.naming.llm_summary_chars
    out: dict[int, ChatRequest] = {}
    for i, p in enumerate(parents):
        kids = children_of[p]
        if len(kids) < 2:
            continue
        items = [child_item(child_names[c]) for c in kids]
        contrast: list[str] = []
        for j in nearest_others(stacked, i)[:3]:
            contrast.extend(child_names[c].name for c in children_of[parents[j]])
        contrast = contrast[: max(cfg.naming.llm_contrast, 0)]
        blocks = [block("children", items, chars * 2), block("nearby", contrast, chars)]
        out[p] = naming_request(PARENT_TASK, blocks, cfg, f"parent {p}")
    return out


def samples(req: ChatRequest, k: int) -> list[ChatRequest]:
    """``req`` as is (greedy, when the run is) and ``k - 1`` times at a sampling temperature with
    other seeds: a greedy model asked to correct itself often repeats its answer."""
    out = [req]
    for i in range(1, k):
        temp = max(req.temperature, RETRY_TEMPERATURE)
        out.append(replace(req, seed=(req.seed or 0) + 7919 * i, temperature=temp))
    return out


def as_reply(n: NodeName) -> str:
    """A node's name as the model's own earlier reply, for a retry that continues it."""
    return json.dumps({"name": n.name, "description": n.description}, ensure_ascii=False)


__all__ = [
    "DEFAULT_SUBJECT",
    "as_reply",
    "by_centrality",
    "centroids",
    "child_item",
    "leaf_requests",
    "naming_request",
    "nearest_others",
    "parent_requests",
    "samples",
]
