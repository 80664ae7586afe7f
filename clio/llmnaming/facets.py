"""Facet summaries: every conversation answered against the questions that fit it, in ONE call.

As in Clio, an LLM reads each conversation and answers a few questions about it ("facets"); the
answers, not the raw transcripts, are what gets clustered and named. The facets are declared in the
config, so a new one needs no code (a ``[[facets]]`` list replaces the defaults, so list every facet
you want)::

    [[facets]]
    name = "bail_reason"
    question = "What situation led the assistant to end, or want to leave, this conversation?"
    prefill = "The assistant left because"
    applies_to = "bails"    # "all" (default) | "transcripts" | "bails"

    [[facets]]
    name = "concern"
    question = "How concerning is this conversation, from 1 (not) to 5 (very)?"
    type = "integer"        # "text" (default, max_chars) | "integer" (minimum, maximum) | "choice"
    minimum = 1
    maximum = 5

The defaults (:func:`bailclio.config.default_facets`) are ``request``, ``bail_reason`` (asked of
bail transcripts only), ``language`` and ``concern`` (1-5).

Facets fit the input. Each row is a single prompt (no assistant turn), a transcript, or a bail
(a transcript with bail metadata or a journal) (:func:`row_kind`); a facet is asked only of the
rows it ``applies_to``, and is ``None`` elsewhere. The clustered facet is the user's choice
(``llm.facet`` or ``clustered = true``), else chosen from the input (:func:`choose_facet`): why
the assistant left for bail transcripts, what the user asks for single prompts.

All facets of a conversation are asked in one structured call whose JSON schema
(:func:`facet_schema`) has types and limits only: no descriptive text and no example answer that
a model could copy. A text answer is cleaned before it is stored or embedded
(:func:`clean_answer`): a restatement of the question or prefill is stripped, an over-long answer
is cut at a sentence boundary, and an answer made of the prompt's own text is rejected; a
rejected answer is asked again once with the problem stated, then left empty (``facets_issues``).

Safety of the prompt: the conversation is untrusted data. It is placed inside
``<conversation>...</conversation>`` with any of our delimiter tags inside the content neutralised
(:func:`bailclio.llmnaming.delimiters.escape_delimiters`), and the instructions say that text
inside it is never an instruction. Replies are validated by pydantic (integers in range, choices
exact); keys outside the facets are dropped, never stored; a reply that does not validate is a
failure, never a value. Summaries must not contain personal information: the prompt forbids it
and :func:`bailclio.llmnaming.answers.scrub_pii` removes e-mail addresses, phone numbers and
URLs that slip through anyway.

The calls themselves, one per distinct conversation, are made by
:func:`bailclio.llmnaming.facet_extract.extract_facets`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from bailclio.config import FacetConfig
from bailclio.llm.base import ChatRequest
from bailclio.llmnaming.answers import copies_prompt, cut_at_sentence, scrub_pii, strip_restatement
from bailclio.llmnaming.degeneracy import normalise
from bailclio.llmnaming.delimiters import escape_delimiters
from bailclio.llmnaming.prompts import BAIL_NOTE, FACETS_SYSTEM

BAIL_CONTEXT_COLUMNS = ("model", "bail_method", "journal")


ROW_KINDS = ("prompt", "transcript", "bail")
_APPLIES = {"all": set(ROW_KINDS), "transcripts": {"transcript", "bail"}, "bails": {"bail"}}


def row_kind(turns: list[dict[str, str]] | None, record: dict[str, Any]) -> str:
    """``"prompt"`` (no assistant turn), ``"bail"`` (a transcript with bail metadata or a journal)
    or ``"transcript"``.

    >>> row_kind(None, {})
    'prompt'
    >>> row_kind([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "bye"}],
    ...          {"journal": "I left"})
    'bail'
    """
    if not turns or not any(t.get("role") == "assistant" for t in turns):
        return "prompt"
    bail = any(record.get(k) not in (None, "") for k in ("journal", "bail_method", "bail_turn"))
    return "bail" if bail else "transcript"


def applies(facet: FacetConfig, kind: str) -> bool:
    return kind in _APPLIES[facet.applies_to]


def choose_facet(facets: Sequence[FacetConfig], kinds: Sequence[str]) -> FacetConfig:
    """The text facet to cluster when none was chosen: why the assistant left when most rows are
    bail transcripts, else one asked of transcripts when most rows are transcripts, else the first
    facet asked of every row (Clio's request facet for single prompts)."""
    text = [f for f in facets if f.type == "text"]
    if not text:
        raise ValueError("no text facet to cluster")
    n = max(len(kinds), 1)
    for scope in ("bails", "transcripts", "all"):
        for f in text:
            if f.applies_to == scope and sum(applies(f, k) for k in kinds) * 2 >= n:
                return f
    return max(text, key=lambda f: sum(applies(f, k) for k in kinds))


def facet_schema(facets: Sequence[FacetConfig]) -> dict[str, Any]:
    """The JSON schema sent to the server: types and ranges only, no descriptive text a model
    could copy into an answer. Text lengths are not in it: llama.cpp turns ``maxLength`` into a
    grammar of one rule per character, which slows its sampling many times over; over-long
    answers are cut at a sentence boundary afterwards instead."""
    props: dict[str, Any] = {}
    for f in facets:
        if f.type == "text":
            props[f.name] = {"type": "string"}
        elif f.type == "integer":
            props[f.name] = {"type": "integer", "minimum": f.minimum, "maximum": f.maximum}
        else:
            props[f.name] = {"type": "string", "enum": list(f.choices or ())}
    return {
        "type": "object",
        "properties": props,
        "required": [f.name for f in facets],
        "additionalProperties": False,
    }


def facet_model(facets: Sequence[FacetConfig]) -> type[BaseModel]:
    """A pydantic model with one field per facet. Integers and choices are validated exactly;
    text answers need only be non-empty, since they are cleaned and cut to ``max_chars`` at a
    sentence boundary afterwards (:func:`clean_answer`). Keys beyond the facets are dropped."""
    fields: dict[str, Any] = {}
    for f in facets:
        if f.type == "text":
            ann: Any = Annotated[str, Field(min_length=1)]
        elif f.type == "integer":
            ann = Annotated[int, Field(ge=f.minimum, le=f.maximum)]
        else:
            ann = Literal[tuple(f.choices or ())]  # type: ignore[misc]
        fields[f.name] = (ann, ...)
    return create_model(  # type: ignore[call-overload,no-any-return]
        "Facets", __config__=ConfigDict(extra="ignore"), **fields
    )


def _answer_spec(f: FacetConfig) -> str:
    if f.type == "integer":
        how = f" Answer with an integer from {f.minimum} to {f.maximum}."
    elif f.type == "choice":
        how = " Answer with one of: " + ", ".join(json.dumps(c) for c in f.choices or ()) + "."
    else:
        how = " Answer in a few words." if f.max_chars <= 60 else " Answer in one short sentence."
        if f.prefill:
            how += f' Write only the words that come after "{f.prefill}", not those words.'
    return f'- "{f.name}": {f.question}{how}'


def render_transcript(turns: list[dict[str, str]] | None, text: str, max_chars: int) -> str:
    """The transcript in order (``Role: content`` blocks), or the text; the end kept when cut."""
    if turns:
        body = "\n\n".join(f"{t['role'].capitalize()}: {t['content'].strip()}" for t in turns)
    else:
        body = f"User: {text}"
    if len(body) > max_chars:  # the end (where the assistant left) matters most
        head = max_chars // 4
        body = body[:head] + "\n[...]\n" + body[-(max_chars - head) :]
    return body


def _questions(facets: Sequence[FacetConfig]) -> list[str]:
    return ["Questions about the conversation given below:", *(_answer_spec(f) for f in facets)]


def _closing(facets: Sequence[FacetConfig]) -> str:
    keys = ", ".join(f.name for f in facets)
    return (
        f"Answer every question above about this conversation, as a JSON object with exactly the keys: {keys}"
    )


def instructions(facets: Sequence[FacetConfig], bail_context: dict[str, Any]) -> list[str]:
    """The prompt's own text (everything but the conversation and the bail record's values)."""
    return [*_questions(facets), *([BAIL_NOTE] if bail_context else []), _closing(facets)]


def facet_request(
    facets: Sequence[FacetConfig],
    transcript: str,
    bail_context: dict[str, Any],
    *,
    max_tokens: int,
    temperature: float,
    tag: str | None = None,
) -> ChatRequest:
    """The one chat request that asks every given facet of one conversation. The questions come
    first, so requests share a prefix a server can keep cached; the conversation follows, then a
    closing line restating what to answer."""
    parts = [*_questions(facets), "", "<conversation>", escape_delimiters(transcript), "</conversation>"]
    ctx = {k: v for k, v in bail_context.items() if v not in (None, "")}
    if ctx:
        parts.append("<bail_record>")
        for key, value in ctx.items():
            parts.append(f"{key}: {escape_delimiters(str(value))}")
        parts.append("</bail_record>")
        parts.append(BAIL_NOTE)
    parts.append(_closing(facets))
    return ChatRequest(
        messages=[
            {"role": "system", "content": FACETS_SYSTEM},
            {"role": "user", "content": "\n".join(parts)},
        ],
        max_tokens=max_tokens,
        temperature=temperature,
        json_schema=facet_schema(facets),
        schema_name="Facets",
        tag=tag,
    )


def clean_answer(
    answer: str, facet: FacetConfig, instructions: str, conversation: str
) -> tuple[str | None, str, bool]:
    """A text answer ready to store: restatement stripped, contact details scrubbed, cut at a
    sentence boundary. ``(text, "", was_cut)``, or ``(None, reason, False)`` when nothing of the
    conversation is left (only a restatement, or text copied from the prompt)."""
    raw = " ".join(str(answer).split())
    text = strip_restatement(raw, facet.prefill, facet.question)
    if facet.prefill and normalise(text) in (normalise(facet.prefill), ""):
        return None, "only restated the question", False
    if copies_prompt(text, instructions, conversation):
        return None, "copied text of the prompt", False
    text = scrub_pii(text)
    cut = cut_at_sentence(text, facet.max_chars)
    return cut, "", len(cut) < len(text)


def bail_context(record: dict[str, Any]) -> dict[str, Any]:
    """The bail columns of an input row that help explain why the assistant left."""
    return {k: record.get(k) for k in BAIL_CONTEXT_COLUMNS if record.get(k) not in (None, "")}


__all__ = [
    "BAIL_CONTEXT_COLUMNS",
    "ROW_KINDS",
    "applies",
    "bail_context",
    "choose_facet",
    "clean_answer",
    "facet_model",
    "facet_request",
    "facet_schema",
    "instructions",
    "render_transcript",
    "row_kind",
]
