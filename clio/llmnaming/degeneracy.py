"""Does a facet's set of answers still carry information? Collapse detection for the LLM stage.

A facet has collapsed when its answers no longer tell conversations apart: few distinct values,
one answer covering most rows, or answers that repeat text of the prompt itself (a model filling
a question that does not fit with the one example it was given). Clustering on such answers
gives one cluster for everything, so the LLM stage clusters on what still carries information
instead (:mod:`bailclio.llmnaming.stage`) and says so.

Answers are compared after normalisation (case, punctuation, spacing) and counted once per
distinct conversation, so exact duplicate inputs do not look like a collapse.

    >>> q = assess(["insults"] * 9 + ["gore"], n_copied=0)
    >>> q.degenerate, q.reasons
    (True, ['one answer covers 90% of the rows', 'only 2 distinct answers for 10 rows'])
    >>> assess([f"topic {i}" for i in range(10)], n_copied=0).degenerate
    False
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bailclio.llmnaming.answers import words

# Thresholds: one answer on at least half the rows, fewer than a third distinct, or a fifth of
# the answers copied from the prompt. Below MIN_ROWS answers nothing is judged.
TOP_SHARE = 0.5
MIN_DISTINCT_RATIO = 1 / 3
MAX_COPIED_SHARE = 0.2
MIN_ROWS = 4


@dataclass
class FacetQuality:
    rows: int  # distinct conversations with an answer (plus copies rejected)
    distinct: int
    distinct_ratio: float
    top_answer: str | None
    top_share: float
    copied: int
    copied_share: float
    degenerate: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("distinct_ratio", "top_share", "copied_share"):
            out[k] = round(out[k], 4)
        return out


def normalise(answer: str) -> str:
    return " ".join(words(answer))


def assess(answers: Sequence[str | None], *, n_copied: int) -> FacetQuality:
    """Judge one facet from its answers (one per distinct conversation; ``None``: no answer) and
    the number of answers rejected as copies of the prompt."""
    given = [normalise(a) for a in answers if a]
    counts = Counter(given)
    n = len(given) + n_copied
    distinct = len(counts)
    top, top_n = counts.most_common(1)[0] if counts else (None, 0)
    q = FacetQuality(
        rows=n,
        distinct=distinct,
        distinct_ratio=distinct / len(given) if given else 0.0,
        top_answer=top,
        top_share=top_n / n if n else 0.0,
        copied=n_copied,
        copied_share=n_copied / n if n else 0.0,
        degenerate=False,
    )
    if n < MIN_ROWS:
        return q
    if q.top_share >= TOP_SHARE:
        q.reasons.append(f"one answer covers {q.top_share:.0%} of the rows")
    if given and q.distinct_ratio < MIN_DISTINCT_RATIO:
        q.reasons.append(f"only {distinct} distinct answers for {len(given)} rows")
    if q.copied_share >= MAX_COPIED_SHARE:
        q.reasons.append(f"{n_copied} of {n} answers copied text of the prompt")
    q.degenerate = bool(q.reasons)
    return q


__all__ = ["FacetQuality", "assess", "normalise"]
