"""Every facet of every conversation asked, in one structured call per distinct conversation.

The requests are built by :mod:`bailclio.llmnaming.facets`; identical conversations make one
call. Replies are validated, and their text answers cleaned
(:func:`bailclio.llmnaming.facets.clean_answer`); an answer that copies the prompt or only
restates the question is asked again once with the problem stated, then left empty for the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bailclio.config import FacetConfig
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llm.structured import generate_structured, with_feedback
from bailclio.llmnaming.facets import (
    applies,
    clean_answer,
    facet_model,
    facet_request,
    instructions,
    render_transcript,
    row_kind,
)
from bailclio.llmnaming.prompts import FACETS_FEEDBACK, FACETS_SYSTEM


@dataclass
class FacetResults:
    """Per-row facet values (``None`` where the row's call failed) and the failure reasons.

    ``kinds`` holds each row's :func:`row_kind`; a facet not asked of a row is ``None`` in its
    values; ``issues`` holds, per row, the facets whose answers were rejected and why."""

    values: list[dict[str, Any] | None]
    errors: list[str | None]
    facets: list[FacetConfig]
    requests: int = 0
    distinct_requests: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    issues: list[dict[str, str]] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # row -> distinct request

    @property
    def n_failed(self) -> int:
        return sum(v is None for v in self.values)

    def column(self, name: str) -> list[Any]:
        return [None if v is None else v.get(name) for v in self.values]


@dataclass
class Cleaned:
    """One reply with its text answers cleaned: the row's values, the facets whose answers were
    rejected (and why), and how many answers were cut."""

    row: dict[str, Any]
    problems: dict[str, str]
    trimmed: int


def distinct_requests(requests: Sequence[ChatRequest | None]) -> tuple[list[int], list[int]]:
    """A representative row per distinct request, and each row's distinct request (-1: none)."""
    keyed: dict[str, int] = {}
    distinct: list[int] = []
    slot: list[int] = []
    for i, r in enumerate(requests):
        if r is None:
            slot.append(-1)
            continue
        k = r.cache_key("facets", "")
        if k not in keyed:
            keyed[k] = len(distinct)
            distinct.append(i)
        slot.append(keyed[k])
    return distinct, slot


def _clean(parsed: BaseModel, asked: Sequence[FacetConfig], own_words: str, transcript: str) -> Cleaned:
    row = parsed.model_dump()
    problems: dict[str, str] = {}
    trimmed = 0
    for f in asked:
        if f.type != "text":
            continue
        value, why, was_cut = clean_answer(row[f.name], f, own_words, transcript)
        if value is None:
            problems[f.name] = why
        trimmed += was_cut
        row[f.name] = value
    return Cleaned(row, problems, trimmed)


def _per_row(
    slot: list[int], cleaned: list[Cleaned | None], errors_of: list[str | None], facets: Sequence[FacetConfig]
) -> tuple[list[dict[str, Any] | None], list[str | None], list[dict[str, str]]]:
    """Each row's values, error and rejected answers, from its distinct request's reply."""
    values: list[dict[str, Any] | None] = []
    errors: list[str | None] = []
    issues: list[dict[str, str]] = []
    for s in slot:
        if s < 0:  # no facet applies to the row
            values.append({f.name: None for f in facets})
            errors.append(None)
            issues.append({})
            continue
        c = cleaned[s]
        if c is None:
            values.append(None)
            errors.append(errors_of[s] or "no reply")
            issues.append({})
            continue
        values.append({f.name: c.row.get(f.name) for f in facets})
        errors.append(None)
        issues.append(dict(c.problems))
    return values, errors, issues


def extract_facets(
    backend: LLMBackend,
    facets: Sequence[FacetConfig],
    texts: Sequence[str],
    turns: Sequence[list[dict[str, str]] | None],
    bail_contexts: Sequence[dict[str, Any]],
    *,
    conversation_chars: int,
    max_tokens: int,
    temperature: float,
    max_attempts: int,
    kinds: Sequence[str] | None = None,
) -> FacetResults:
    """Ask every applicable facet of every row (identical requests are called once), validated,
    cleaned and scrubbed. An answer that copies the prompt or only restates the question is asked
    again once with the problem stated; if it still does, that facet is left empty for the row."""
    kinds = (
        list(kinds)
        if kinds is not None
        else [row_kind(t, c) for t, c in zip(turns, bail_contexts, strict=True)]
    )
    asked = [[f for f in facets if applies(f, k)] for k in kinds]
    transcripts = [render_transcript(tr, tx, conversation_chars) for tx, tr in zip(texts, turns, strict=True)]
    requests = [
        facet_request(fs, tr, ctx, max_tokens=max_tokens, temperature=temperature, tag=str(i)) if fs else None
        for i, (fs, tr, ctx) in enumerate(zip(asked, transcripts, bail_contexts, strict=True))
    ]
    # Identical conversations make one call (and bounded retries), whatever their row.
    distinct, slot = distinct_requests(requests)
    models = {tuple(f.name for f in fs): facet_model(fs) for fs in asked if fs}
    reqs = [requests[i] for i in distinct]
    mods = [models[tuple(f.name for f in asked[i])] for i in distinct]
    attempts: list[int] = []
    answers = generate_structured(backend, reqs, mods, max_attempts, desc="facets", attempts_out=attempts)
    own_words = [FACETS_SYSTEM + "\n" + "\n".join(instructions(asked[i], bail_contexts[i])) for i in distinct]

    def clean(j: int, parsed: BaseModel) -> Cleaned:
        return _clean(parsed, asked[distinct[j]], own_words[j], transcripts[distinct[j]])

    cleaned = [None if parsed is None else clean(j, parsed) for j, (parsed, _) in enumerate(answers)]
    # One more try, with the problem stated, for replies whose text answers were unusable.
    redo = [j for j, c in enumerate(cleaned) if c is not None and c.problems]
    if redo and not backend.budget_exhausted:
        fb = []
        for j in redo:
            said = "; ".join(f'"{k}" {v}' for k, v in cleaned[j].problems.items())  # type: ignore[union-attr]
            prev = answers[j][0]
            assert prev is not None
            fb.append(with_feedback(reqs[j], prev.model_dump_json(), FACETS_FEEDBACK.format(said=said)))
        again = generate_structured(backend, fb, [mods[j] for j in redo], 1, desc="facets (feedback)")
        for j, (parsed, _) in zip(redo, again, strict=True):
            if parsed is None:
                continue
            new = clean(j, parsed)
            if len(new.problems) <= len(cleaned[j].problems):  # type: ignore[union-attr]
                cleaned[j] = new
    values, errors, issues = _per_row(slot, cleaned, [err for _, err in answers], facets)
    stats = {
        "first_attempt_valid": sum(
            a == 1 for a, (p, _) in zip(attempts, answers, strict=True) if p is not None
        ),
        "replies_valid": sum(p is not None for p, _ in answers),
        "feedback_retries": len(redo),
        "trimmed": sum(c.trimmed for c in cleaned if c is not None),
    }
    return FacetResults(
        values, errors, list(facets), sum(r is not None for r in requests), len(distinct), stats,
        kinds=kinds, issues=issues, slots=slot,
    )  # fmt: skip


__all__ = ["Cleaned", "FacetResults", "distinct_requests", "extract_facets"]
