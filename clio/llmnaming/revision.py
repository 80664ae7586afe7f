"""Clio's reconstruction check turned into one round of revision of the leaves' names.

Every member is put back into the leaf whose name and description are nearest to it
(:class:`~bailclio.llmnaming.grounder.Reconstruction`). A leaf named by the LLM whose text leaves
members elsewhere, or takes members of other leaves (at least one, and at least
``naming.revision_min_missed`` of its size), is asked again, shown the most typical of them (one
request for each, ``naming.revision_samples`` replies each). Of the candidate texts the best is
kept only when it is grounded and puts more members back into their own leaf than the old one
did (leaves are taken in order, each against the texts kept so far), so the level's
reconstruction never falls; the old text stays otherwise. A node that keeps its keyphrase name is
placed by the name and description it will have (``fallback_descriptions``).

The candidates: each reply as written; for a reply about lost members, the old description's
first sentence joined to the reply's first (a small model often rewrites about the lost members
alone); and with ``evidence`` (and ``naming.revision_evidence``) two that ask nothing, the leaf's
own text followed by its distinctive terms, and by those and its most typical member. The
outcome is the node's ``revision``: each candidate, its gain, and the kind ``kept``. Then the
level is held to its keyphrase texts (:mod:`bailclio.llmnaming.fallback`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llm.structured import with_feedback
from bailclio.llmnaming.delimiters import block
from bailclio.llmnaming.fallback import evidence_tail, fallback_kind, keyphrase_texts_where_better
from bailclio.llmnaming.grounder import Grounder, Reconstruction
from bailclio.llmnaming.grounding import check_each
from bailclio.llmnaming.prompts import INTRUDERS_FEEDBACK, REVISION_FEEDBACK
from bailclio.llmnaming.replies import Reply, ask, description_of, first_sentence, followed_by
from bailclio.llmnaming.requests import as_reply, samples
from bailclio.llmnaming.types import Candidate, LeafEvidence, NodeName, llm_name, node_text


@dataclass(frozen=True)
class RevisionAsk:
    """One revision request: the leaf, and whether it shows the members the leaf ``missed`` or
    the ``intruders`` it took."""

    node: int
    kind: str


@dataclass
class Misplaced:
    """How many of a leaf's members land elsewhere, and how many of others' land in it."""

    missed: int = 0
    intruders: int = 0


def typical(vectors: np.ndarray, rows: np.ndarray, n: int, centre: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` of ``rows`` nearest the mean of ``centre`` (default: of ``rows``), nearest first."""
    mean = vectors[rows if centre is None else centre].mean(axis=0)
    return rows[np.argsort(-(vectors[rows] @ mean), kind="stable")][: max(1, n)]


def _revision_requests(
    nodes: dict[int, NodeName],
    requests: dict[int, ChatRequest],
    summaries: Sequence[str],
    groups: np.ndarray,
    place: Reconstruction,
    grounder: Grounder,
    cfg: Config,
    texts: dict[int, str],
) -> tuple[list[ChatRequest], list[RevisionAsk], dict[int, Misplaced]]:
    """The requests of every leaf worth revising, what each asks, and each such leaf's counts.
    One request for the members it lost and one for those it took: asked together, a small model
    answers neither well."""
    shown = max(1, cfg.naming.llm_members // 2)
    chars = cfg.naming.llm_summary_chars
    asks: list[ChatRequest] = []
    asked_for: list[RevisionAsk] = []
    counts: dict[int, Misplaced] = {}
    for g in sorted(requests):
        if g not in texts or nodes[g].source != "llm":
            continue
        own = np.flatnonzero(groups == g)
        least = max(1.0, cfg.naming.revision_min_missed * len(own))
        missed, taken = place.missed(g), place.taken(g)
        missed = missed if len(missed) >= least else missed[:0]
        taken = taken if len(taken) >= least else taken[:0]
        if not len(missed) and not len(taken):
            continue
        prev = as_reply(nodes[g])
        for kind, which, text in (
            ("missed", missed, REVISION_FEEDBACK.format(missed=len(missed), size=len(own))),
            ("intruders", taken, INTRUDERS_FEEDBACK.format(taken=len(taken))),
        ):
            if not len(which):
                continue
            items = [summaries[i] for i in typical(grounder.vectors, which, shown, centre=own)]
            feedback = f"{block(kind, items, chars)}\n\n{text}"
            for req in samples(with_feedback(requests[g], prev, feedback), cfg.naming.revision_samples):
                asks.append(req)
                asked_for.append(RevisionAsk(g, kind))
        counts[g] = Misplaced(len(missed), len(taken))
    return asks, asked_for, counts


def _candidates(
    nodes: dict[int, NodeName],
    answers: dict[int, Reply],
    asked_for: list[RevisionAsk],
    counts: dict[int, Misplaced],
    evidence: dict[int, LeafEvidence] | None,
    cfg: Config,
) -> list[Candidate]:
    """Every candidate text, equal texts of one node once (the first)."""
    cands: list[Candidate] = []
    for key, reply in sorted(answers.items()):
        g, kind, v = asked_for[key].node, asked_for[key].kind, reply.value
        if v is None:
            continue
        cands.append(Candidate(g, "rewritten", llm_name(v.name, v.description)))
        joined = description_of(
            f"{first_sentence(nodes[g].description or '')} {first_sentence(v.description)}"
        )
        if kind == "missed" and joined not in (nodes[g].description, v.description):
            cands.append(Candidate(g, "extended", llm_name(nodes[g].name, joined)))
    if evidence and cfg.naming.revision_evidence:
        for g in sorted(counts):
            if g in evidence and evidence[g].keywords:
                for kind, with_typical in (("keywords", False), ("typical", True)):
                    marked = followed_by(nodes[g].description or "", evidence_tail(evidence[g], with_typical))
                    cands.append(Candidate(g, kind, llm_name(nodes[g].name, marked)))
    unique: dict[tuple[int, str], Candidate] = {}
    for c in cands:
        unique.setdefault((c.node, node_text(c.name)), c)
    return list(unique.values())


def _keep_best(
    nodes: dict[int, NodeName],
    cands: list[Candidate],
    groups: np.ndarray,
    place: Reconstruction,
    grounder: Grounder,
    counts: dict[int, Misplaced],
    exclude: Sequence[int],
) -> int:
    """Each revised leaf's best grounded candidate, kept when it puts more members back; records
    the node's ``revision``. Returns how many were kept."""
    vecs = grounder.embed([node_text(c.name) for c in cands]) if cands else []
    checks = check_each(grounder, groups, [(c.node, v) for c, v in zip(cands, vecs, strict=True)], exclude)
    kept = 0
    for g in sorted({c.node for c in cands}):
        tried = [i for i, c in enumerate(cands) if c.node == g]
        gains = {i: place.gain(g, vecs[i]) if checks[i].grounded else 0 for i in tried}
        best = max(tried, key=lambda i: gains[i])  # the first of equal gains
        cand = cands[best]
        nodes[g].extra["revision"] = {
            "missed": counts[g].missed,
            "intruders": counts[g].intruders,
            "tried": [
                {"kind": cands[i].kind, "name": cands[i].name.name, "description": cands[i].name.description,
                 "grounded": checks[i].grounded, "gain": gains[i]}
                for i in tried
            ],
            "kept": cand.kind if gains[best] > 0 else None,
        }  # fmt: skip
        if gains[best] > 0:
            place.set(g, vecs[best])
            extra = {**nodes[g].extra, **checks[best].to_extra()}
            nodes[g] = NodeName(cand.name.name, cand.name.description, "llm", None, extra)
            kept += 1
    return kept


def revise(
    backend: LLMBackend,
    nodes: dict[int, NodeName],
    requests: dict[int, ChatRequest],
    summaries: Sequence[str],
    groups: np.ndarray,
    grounder: Grounder,
    cfg: Config,
    *,
    exclude: Sequence[int] = (),
    fallback_descriptions: dict[int, str] | None = None,
    fallback: dict[int, str] | None = None,
    evidence: dict[int, LeafEvidence] | None = None,
) -> dict[str, Any]:
    """One round of revision of the leaves ``nodes`` (in place; see the module docstring); with
    ``fallback`` (the keyphrase names) the level is then held to the reconstruction of its
    keyphrase texts. Returns the revision statistics of the level."""
    texts = {g: node_text(n, fallback_descriptions, g) for g, n in nodes.items() if g not in exclude}
    if len(texts) < 2:
        return {}
    keys = sorted(texts)
    vectors = grounder.embed([texts[k] for k in keys])
    place = Reconstruction(grounder.vectors, groups, dict(zip(keys, vectors, strict=True)))
    rows = len(place.index)
    before = place.hits
    asks, asked_for, counts = _revision_requests(
        nodes, requests, summaries, groups, place, grounder, cfg, texts
    )
    answers = ask(backend, dict(enumerate(asks)), cfg, "names: leaves (revision)") if asks else {}
    cands = _candidates(nodes, answers, asked_for, counts, evidence, cfg)
    kept = _keep_best(nodes, cands, groups, place, grounder, counts, exclude)
    kp_hits = None
    if fallback is not None and rows:
        kp_hits = keyphrase_texts_where_better(
            nodes, keys, place, groups, grounder, fallback, fallback_descriptions, cfg,
            candidates=sorted(counts), exclude=exclude, evidence=evidence,
        )  # fmt: skip
    return {
        "revisions_asked": len(counts),
        "revision_calls": len(asks),
        "revisions_kept": kept,
        "revisions_to_evidence": sum(fallback_kind(nodes[g]) == "evidence" for g in counts),
        "revisions_to_keyphrases": sum(fallback_kind(nodes[g]) == "keyphrases" for g in counts),
        "reconstruction_before": round(before / rows, 4) if rows else None,
        "reconstruction_after": round(place.hits / rows, 4) if rows else None,
        "reconstruction_keyphrases": round(kp_hits / rows, 4) if kp_hits is not None else None,
    }


__all__ = ["Misplaced", "RevisionAsk", "revise", "typical"]
