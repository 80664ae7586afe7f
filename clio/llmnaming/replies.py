"""Naming replies: what a reply must be, how it is cleaned, and the call that asks for them.

A naming reply is a two-sentence description and a short name (:class:`ClusterName`), validated
by pydantic (a name longer than 80 characters or made of generic words only, such as "Helpful
Request", is refused and asked again; a reply about the prompt's tagged lists is refused),
whitespace-normalised and scrubbed of e-mail addresses, phone numbers and URLs
(:func:`clean_text`). :func:`ask` sends a batch of requests and returns, per key, a
:class:`Reply`: the cleaned name or the reason there is none.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llm.structured import generate_structured
from bailclio.llmnaming.answers import copies_prompt, cut_at_sentence, scrub_pii
from bailclio.llmnaming.delimiters import mentions_prompt_tags, without_data_blocks

DESCRIPTION_CHARS = 400

# Words that name no subject: a name made of these alone ("Helpful Request", "Assist users
# with various tasks") fits every cluster, so it is refused and asked again.
_GENERIC = """a an the and or of for to with in on about by from this that these their its any all
    some various different general other others multiple many several miscellaneous misc mixed
    help helpful helping assist assisting assistance assistant support supporting provide
    providing give giving get getting offer offering handle handling answer answering respond
    responding seek seeking ask asking make making do doing user users people person member
    members cluster group groups community request requests conversation conversations chat
    chats question questions query queries task tasks topic topics thing things information
    info content stuff issue issues problem problems item items prompt prompts message messages
    interaction interactions engage engaging discuss discussing talk talking"""
GENERIC_WORDS = frozenset(_GENERIC.split())


def is_generic(name: str) -> bool:
    """True when every word of ``name`` is in :data:`GENERIC_WORDS`.

    >>> is_generic("Helpful Request"), is_generic("Write rhyming poems about the sea")
    (True, False)
    """
    words = re.findall(r"[a-z]+", name.lower())
    return bool(words) and all(w in GENERIC_WORDS for w in words)


class ClusterName(BaseModel):
    """What a naming reply must be. A name longer than 80 characters is refused; a description is
    cut to its first two sentences (at most :data:`DESCRIPTION_CHARS`) rather than refused; keys
    beyond the two are dropped."""

    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=2, max_length=80)
    description: str = Field(min_length=10)

    @field_validator("name")
    @classmethod
    def _not_generic(cls, name: str) -> str:
        if is_generic(name):
            raise ValueError("the name says nothing about the subject (only generic words)")
        return name

    @field_validator("name", "description")
    @classmethod
    def _not_about_the_prompt(cls, text: str) -> str:
        if mentions_prompt_tags(text):
            raise ValueError("it describes the prompt's tagged lists instead of their items")
        return text


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Reply:
    """One naming request's outcome: the cleaned reply, or ``None`` and the reason."""

    value: ClusterName | None
    error: str | None = None


def clean_text(text: str) -> str:
    """Whitespace joined, outer quotes dropped, contact details scrubbed."""
    text = " ".join(text.split()).strip().strip("\"'“”‘’").strip()
    return scrub_pii(text)


def clean_name(name: str) -> str:
    return re.sub(r"[.:;,]+$", "", clean_text(name)).strip()


def description_of(text: str) -> str:
    """At most two sentences and :data:`DESCRIPTION_CHARS` characters, cut at a sentence end."""
    text = clean_text(text)
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    if len(ends) > 2:
        text = text[: ends[1]]
    return cut_at_sentence(text, DESCRIPTION_CHARS)


def first_sentence(text: str) -> str:
    m = re.search(r"[.!?](?=\s|$)", text)
    return text[: m.end()] if m else text


def followed_by(text: str, more: str) -> str:
    """``text`` and then ``more``, as a new sentence."""
    text = text.strip()
    if text and not re.search(r"[.!?][\"')\]]*$", text):
        text += "."
    return f"{text} {more}".strip()


def instructions_of(req: ChatRequest) -> str:
    """The prompt's own words: system and task text, without the tagged member lists. Turns
    after the model's first reply (a retry's feedback, which quotes that reply) are not the
    prompt's words: a retry may keep words of its own earlier answer."""
    first: list[dict] = []
    for m in req.messages:
        if m["role"] == "assistant":
            break
        first.append(m)
    return without_data_blocks("\n".join(str(m["content"]) for m in first))


def _checked(value: ClusterName, req: ChatRequest) -> Reply:
    name, desc_text = clean_name(value.name), description_of(value.description)
    instructions = instructions_of(req)
    if len(name) < 2 or len(desc_text) < 10:
        return Reply(None, "invalid reply (empty after cleaning)")
    if copies_prompt(name, instructions) or copies_prompt(desc_text, instructions, share=0.5):
        return Reply(None, "invalid reply (copied text of the prompt)")
    return Reply(ClusterName(name=name, description=desc_text))


def ask(
    backend: LLMBackend,
    requests: dict[K, ChatRequest],
    cfg: Config,
    desc: str,
    first_ok: dict[str, int] | None = None,
    max_attempts: int | None = None,
) -> dict[K, Reply]:
    """Every request (in key order), validated and cleaned, each tried up to ``max_attempts``
    times (default ``llm.max_attempts``); ``first_ok`` receives ``first_attempt_valid``, the
    replies valid at the first attempt."""
    keys = sorted(requests)  # type: ignore[type-var]
    attempts: list[int] = []
    answers = generate_structured(
        backend,
        [requests[k] for k in keys],
        ClusterName,
        max_attempts or cfg.llm.max_attempts,
        desc=desc,
        attempts_out=attempts,
    )
    if first_ok is not None:
        first_ok["first_attempt_valid"] = sum(
            a == 1 for a, (v, _) in zip(attempts, answers, strict=True) if v is not None
        )
    out: dict[K, Reply] = {}
    for k, (value, err) in zip(keys, answers, strict=True):
        out[k] = Reply(None, err) if value is None else _checked(value, requests[k])  # type: ignore[arg-type]
    return out


__all__ = [
    "ClusterName",
    "GENERIC_WORDS",
    "Reply",
    "ask",
    "clean_name",
    "clean_text",
    "description_of",
    "first_sentence",
    "followed_by",
    "instructions_of",
    "is_generic",
]
