"""The grounding step of every level: each LLM name checked against its own members, retried
once with the failure stated, else replaced by the keyphrase name.

A name is grounded when it is nearer its own members than its nearest siblings'
(:class:`~bailclio.llmnaming.grounder.Grounder`). A failing name is asked again once, with the
failure stated, as ``naming.grounding_retry_samples`` replies (a greedy one and sampled ones,
:func:`~bailclio.llmnaming.requests.samples`); when no whole reply holds, the first sentence alone
of each is tried too. The grounded candidate with the largest margin is kept; a node with none
keeps its keyphrase name, with the reason in ``name_error``. (Showing the retry the sibling's
typical items was tried: the model then described them, and fewer names held.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llm.structured import with_feedback
from bailclio.llmnaming.grounder import Grounder, Grounding
from bailclio.llmnaming.prompts import GROUNDING_FEEDBACK
from bailclio.llmnaming.replies import Reply, ask, first_sentence
from bailclio.llmnaming.requests import as_reply, samples
from bailclio.llmnaming.types import Candidate, NodeName, llm_name, node_text


@dataclass(frozen=True)
class Subject:
    """What a level's nodes are made of, as the grounding feedback says it: ``members`` /
    ``nearby conversations`` for leaves, ``groups`` / ``groups of the nearby categories`` above."""

    own: str
    others: str


LEAF_SUBJECT = Subject("members", "nearby conversations")
PARENT_SUBJECT = Subject("groups", "groups of the nearby categories")


def check_each(
    grounder: Grounder, groups: np.ndarray, cands: Sequence[tuple[int, np.ndarray]], exclude: Sequence[int]
) -> list[Grounding]:
    """The grounding of each (node, embedded text) candidate, several per node: one check per
    turn (each node's first candidates, then its second...), not one per candidate."""
    out: list[Grounding | None] = [None] * len(cands)
    slot: dict[int, int] = {}
    turns: list[dict[int, int]] = []
    for i, (g, _) in enumerate(cands):
        t = slot[g] = slot.get(g, -1) + 1
        if t == len(turns):
            turns.append({})
        turns[t][g] = i
    for turn in turns:
        res = grounder.check_vectors(groups, {g: cands[i][1] for g, i in turn.items()}, exclude=exclude)
        for g, i in turn.items():
            out[i] = res[g]
    return out  # type: ignore[return-value]


def _retry_requests(
    nodes: dict[int, NodeName],
    requests: dict[int, ChatRequest],
    failed: list[int],
    first: dict[int, Grounding],
    subject: Subject,
    k: int,
) -> dict[tuple[int, int], ChatRequest]:
    """(node, sample) -> the retry request, the failure stated after the node's own reply."""
    retry: dict[tuple[int, int], ChatRequest] = {}
    for g in failed:
        msg = GROUNDING_FEEDBACK.format(
            name=nodes[g].name, what=subject.own, others=subject.others, why=first[g].explain()
        )
        for i, req in enumerate(samples(with_feedback(requests[g], as_reply(nodes[g]), msg), k)):
            retry[(g, i)] = req
    return retry


def _candidates(
    nodes: dict[int, NodeName], failed: list[int], answers: dict[tuple[int, int], Reply]
) -> list[Candidate]:
    """The retries' replies, then for each failed node the first sentence alone of its old text
    and of each reply (the second sentence, about the contrast with the nearby items, often fits
    those better than the members)."""
    cands = [
        Candidate(g, "retry", llm_name(r.value.name, r.value.description))
        for (g, _), r in sorted(answers.items())
        if r.value is not None
    ]
    for g in failed:
        for n in [nodes[g], *(c.name for c in cands if c.node == g and not c.trimmed)]:
            one = first_sentence(n.description or "")
            if len(one) >= 10 and one != n.description:
                cands.append(Candidate(g, "first sentence", llm_name(n.name, one), trimmed=True))
    return cands


def ground(
    backend: LLMBackend,
    nodes: dict[int, NodeName],
    requests: dict[int, ChatRequest],
    groups: np.ndarray,
    grounder: Grounder,
    cfg: Config,
    fallback: dict[int, str],
    *,
    desc: str,
    subject: Subject,
    exclude: Sequence[int] = (),
    fallback_descriptions: dict[int, str] | None = None,
) -> dict[str, int]:
    """Check every LLM name asked in ``requests`` against its members; retry a failing one once
    with the failure stated; replace one that fails again by its keyphrase name (``fallback``).
    Records ``grounding_margin`` / ``grounded`` on every node of the level (in place) and returns
    the level's grounding statistics."""
    asked = [g for g in sorted(requests) if nodes[g].source == "llm"]
    first = grounder.check(groups, {g: node_text(nodes[g]) for g in asked}, exclude=exclude)
    failed = [g for g in asked if not first[g].grounded]
    k = cfg.naming.grounding_retry_samples
    retry = _retry_requests(nodes, requests, failed, first, subject, k)
    # names-only mode spends at most three calls on a node: the name (llm.max_attempts, at most
    # two) and one try of one retry
    attempts = 1 if cfg.llm.names_only else None
    answers = ask(backend, retry, cfg, f"{desc} (grounding retry)", max_attempts=attempts) if retry else {}
    cands = _candidates(nodes, failed, answers)
    vecs = grounder.embed([node_text(c.name) for c in cands]) if cands else []
    again = check_each(grounder, groups, [(c.node, v) for c, v in zip(cands, vecs, strict=True)], exclude)
    for g in asked:
        nodes[g].extra["grounded_first"] = first[g].grounded
    for g in failed:
        tried = [i for i, c in enumerate(cands) if c.node == g]
        ok = [i for i in tried if again[i].grounded]
        whole = [i for i in ok if not cands[i].trimmed]
        if ok:
            best = max(whole or ok, key=lambda i: (again[i].margin or 0.0, -i))
            nodes[g] = cands[best].name
            nodes[g].extra.update(grounded_first=False, grounding_retried=True)
            if cands[best].trimmed:
                nodes[g].extra["grounding_first_sentence"] = True
            continue
        if tried:
            why = again[max(tried, key=lambda i: (again[i].margin or 0.0, -i))].explain()
        else:
            reply = answers.get((g, 0), Reply(None, "not asked"))
            why = reply.error or "no reply"
        nodes[g] = NodeName(
            fallback[g],
            None,
            "keyphrases",
            f'ungrounded: "{nodes[g].name}" ({first[g].explain()}); after one retry '
            f"({k} sample{'s' if k > 1 else ''}), the nearest: {why}",
            {"grounded_first": False, "grounding_retried": True},
        )
    final = grounder.check(
        groups,
        {g: node_text(n, fallback_descriptions, g) for g, n in nodes.items() if g not in exclude},
        exclude=exclude,
    )
    for g, res in final.items():
        nodes[g].extra.update(res.to_extra())
    return {
        "grounding_checked": len(asked),
        "grounded_first": len(asked) - len(failed),
        "grounding_retries": len(retry),
        "grounded_after_retry": sum(1 for g in failed if nodes[g].source == "llm"),
        "replaced_ungrounded": sum(1 for g in failed if nodes[g].source == "keyphrases"),
    }


__all__ = ["LEAF_SUBJECT", "PARENT_SUBJECT", "Subject", "check_each", "ground"]
