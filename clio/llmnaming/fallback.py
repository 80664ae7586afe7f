"""The leaves held to their keyphrase texts: LLM text given up only as far as needed for the
level to describe its members no worse than its keyphrase names and descriptions do.

The baseline is the reconstruction from the keyphrase texts alone (every member put back into the
leaf whose keyphrase text is nearest). While the level's texts put back fewer, and
``naming.revision_keyphrases`` is on, revised leaves change, the one that gains most first: first
to their LLM name with the leaf's evidence for a description (its distinctive terms and most
typical member), then, if that is not enough, to their keyphrase name and description
(``name_source = "keyphrases"``, ``name_error`` saying why).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bailclio.config import Config
from bailclio.llmnaming.answers import cut_at_sentence
from bailclio.llmnaming.grounder import Grounder, Reconstruction
from bailclio.llmnaming.grounding import check_each
from bailclio.llmnaming.replies import clean_text
from bailclio.llmnaming.types import Candidate, LeafEvidence, NodeName, llm_name, node_text

MARKED_BY_TERMS = 6  # distinctive terms a revised description may end with
TYPICAL_CHARS = 160  # and the longest typical member it may quote


def evidence_tail(evidence: LeafEvidence, typical: bool) -> str:
    """``Marked by: <terms>.``, and with ``typical`` ``Typical: "<the most typical member>"``."""
    out = f"Marked by: {', '.join(evidence.keywords[:MARKED_BY_TERMS])}."
    if typical and evidence.typical:
        out += f' Typical: "{cut_at_sentence(clean_text(evidence.typical), TYPICAL_CHARS)}"'
    return out


def fallback_kind(n: NodeName) -> str | None:
    """``"evidence"`` or ``"keyphrases"`` when the node's text was given up for that, else None."""
    return (n.extra.get("revision", {}).get("fallback") or {}).get("kind")


def _options(
    nodes: dict[int, NodeName],
    candidates: Sequence[int],
    kp: dict[int, NodeName],
    evidence: dict[int, LeafEvidence] | None,
) -> list[Candidate]:
    options: list[Candidate] = []
    for g in candidates:
        if nodes[g].source != "llm":
            continue
        if evidence and g in evidence and evidence[g].keywords:
            options.append(
                Candidate(g, "evidence", llm_name(nodes[g].name, evidence_tail(evidence[g], True)))
            )
        options.append(Candidate(g, "keyphrases", kp[g]))
    return options


def keyphrase_texts_where_better(
    nodes: dict[int, NodeName],
    keys: list[int],
    place: Reconstruction,
    groups: np.ndarray,
    grounder: Grounder,
    fallback: dict[int, str],
    fallback_descriptions: dict[int, str] | None,
    cfg: Config,
    *,
    candidates: Sequence[int],
    exclude: Sequence[int],
    evidence: dict[int, LeafEvidence] | None = None,
) -> int:
    """The members the keyphrase texts alone put back (the baseline); ``nodes`` and ``place``
    changed in place as the module docstring says."""
    kp = {g: NodeName(fallback[g], (fallback_descriptions or {}).get(g), "keyphrases") for g in keys}
    vecs = dict(zip(keys, grounder.embed([node_text(kp[g]) for g in keys]), strict=True))
    baseline = Reconstruction(grounder.vectors, groups, vecs).hits
    if not cfg.naming.revision_keyphrases or place.hits >= baseline:
        return baseline
    options = _options(nodes, candidates, kp, evidence)
    if not options:
        return baseline
    opt_vecs = grounder.embed([node_text(o.name) for o in options])
    checks = check_each(
        grounder, groups, [(o.node, v) for o, v in zip(options, opt_vecs, strict=True)], exclude
    )
    for kind in ("evidence", "keyphrases"):  # the LLM names kept as long as that is enough
        mine = [i for i, o in enumerate(options) if o.kind == kind]
        while place.hits < baseline and mine:
            gains = {
                i: place.gain(options[i].node, opt_vecs[i])
                if nodes[options[i].node].source == "llm" and checks[i].grounded
                else 0
                for i in mine
            }
            best = max(mine, key=lambda i: gains[i])  # the first of equal gains
            if gains[best] <= 0:
                break
            mine.remove(best)
            g, cand = options[best].node, options[best].name
            place.set(g, opt_vecs[best])
            extra = {**nodes[g].extra, **checks[best].to_extra()}
            extra["revision"] = {**extra.get("revision", {}), "fallback": {"kind": kind, "gain": gains[best]}}
            error = None
            if kind == "keyphrases":
                error = (
                    f"reconstruction: its keyphrase text puts {gains[best]} more members back into their "
                    f"own leaf than the LLM's {nodes[g].name!r}, and the leaves' LLM texts put back fewer "
                    "than their keyphrase texts (revision in taxonomy.json)"
                )
            nodes[g] = NodeName(cand.name, cand.description, cand.source, error, extra)
    return baseline


__all__ = ["evidence_tail", "fallback_kind", "keyphrase_texts_where_better"]
