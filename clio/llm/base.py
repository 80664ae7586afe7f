"""The one interface every LLM back-end implements, the records it speaks, and what a transport
(the part of a back-end that makes the calls) implements.

A back-end takes a batch of :class:`ChatRequest` and returns one :class:`ChatResult` per request,
in order. It never raises for a single failed item: the failure is recorded in
``ChatResult.error`` so a run keeps going and saves what it has. Budget exhaustion is reported the
same way (``error="budget"``), and ``LLMBackend.budget_exhausted`` tells the caller to stop.

Example::

    >>> req = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    >>> req.cache_key("openai", "m")[:8].isalnum()
    True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# The counters every back-end keeps and ``stats()`` reports (``wall_s`` in seconds).
STAT_KEYS = (
    "calls",
    "cache_hits",
    "failures",
    "retries",
    "budget_skipped",
    "prompt_tokens",
    "completion_tokens",
    "wall_s",
)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make.

    ``prefill`` continues a partial assistant turn (the server is asked to continue the final
    message); ``json_schema`` asks for structured output where the server supports it;
    ``top_logprobs`` asks for that many alternatives at each generated position; ``tools`` is the
    OpenAI tools list. ``prompt_logprobs`` asks a vLLM server for the logprobs of the prompt's own
    tokens (``0``: the prompt token only; ``k``: also the top ``k``). ``tag`` is the caller's own
    bookkeeping and is not part of the cache key.
    """

    messages: tuple[dict[str, Any], ...] | list[dict[str, Any]]
    max_tokens: int = 512
    temperature: float = 0.0
    n: int = 1
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "reply"
    tools: list[dict[str, Any]] | None = None
    top_logprobs: int | None = None
    prefill: str | None = None
    tag: str | None = field(default=None, compare=False)
    prompt_logprobs: int | None = None

    def cache_key(self, backend: str, model: str) -> str:
        payload = asdict(self)
        payload.pop("tag", None)
        if payload["prompt_logprobs"] is None:  # keys of requests without it stay as they were
            payload.pop("prompt_logprobs")
        payload["messages"] = list(self.messages)
        blob = json.dumps([backend, model, payload], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ToolCall:
    name: str
    arguments: str = "{}"


@dataclass
class Choice:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    # One entry per generated position: {token_text: logprob} for the top alternatives.
    top_logprobs: list[dict[str, float]] | None = None
    finish_reason: str | None = None
    # The sampled token at each generated position and its logprob (when logprobs were asked).
    tokens: list[str] | None = None
    token_logprobs: list[float] | None = None


@dataclass
class ChatResult:
    choices: list[Choice] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    # None on success; a short reason otherwise ("budget", "http 500 after 6 attempts", ...)
    error: str | None = None
    tag: str | None = None
    # vLLM's prompt logprobs when asked for: one entry per prompt token, None for the first, else
    # {token_id: logprob} with the prompt's own token first (then the top alternatives, if asked).
    prompt_logprobs: list[dict[str, float] | None] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class LLMBackend(Protocol):
    """What the pipeline and ``detect`` need from a back-end."""

    name: str
    model: str

    def generate(self, requests: list[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Run every request (bounded concurrency, cache, retries); results in request order."""
        ...

    @property
    def budget_exhausted(self) -> bool: ...

    def stats(self) -> dict[str, Any]:
        """Counters for the manifest: calls, cache_hits, failures, retries, prompt/completion
        tokens, wall_s."""
        ...

    def close(self) -> None: ...


class ServerDown(Exception):
    """Raised by a transport whose server went away (its circuit breaker opened), after it has
    reported every call that completed; the message says why."""


class Meter:
    """The per-run budget and the :data:`STAT_KEYS` counters, shared by a back-end and its
    transport: the transport asks :meth:`allow` before each call it makes (retries included) and
    reports tokens with :meth:`spend` and retries with :meth:`retried`.

    >>> m = Meter(max_calls=3)
    >>> m.allow(2), m.allow(2), m.exhausted
    (2, 1, True)
    """

    def __init__(self, max_calls: int | None = None, max_total_tokens: int | None = None) -> None:
        self.max_calls = max_calls
        self.max_total_tokens = max_total_tokens
        self.exhausted = False
        self.counts: dict[str, float] = dict.fromkeys(STAT_KEYS, 0)
        self.counts["wall_s"] = 0.0

    def allow(self, n: int = 1) -> int:
        """How many of the next ``n`` calls the budget allows; those are counted as made. Once
        refused, the budget stays exhausted."""
        if self.exhausted:
            return 0
        allowed = n
        if self.max_calls is not None:
            allowed = min(allowed, max(0, self.max_calls - int(self.counts["calls"])))
        used = self.counts["prompt_tokens"] + self.counts["completion_tokens"]
        if self.max_total_tokens is not None and used >= self.max_total_tokens:
            allowed = 0
        if allowed < n:
            self.exhausted = True
        self.counts["calls"] += allowed
        return allowed

    def spend(self, result: ChatResult) -> None:
        self.counts["prompt_tokens"] += result.prompt_tokens
        self.counts["completion_tokens"] += result.completion_tokens

    def retried(self) -> None:
        self.counts["retries"] += 1


class Transport(Protocol):
    """What a back-end implements: the calls themselves. Cache, dedupe, budget, counters and
    progress are added by :class:`bailclio.llm.backend.Backend`, which hands :meth:`send` only
    requests that are not cached, each once."""

    name: str  # part of every cache key
    model: str

    def send(
        self, requests: list[ChatRequest], meter: Meter, done: Callable[[int, ChatResult], None]
    ) -> None:
        """Make every call; report each result as ``done(index, result)`` as soon as it completes
        (a failed item as a result with ``error``, a call the budget refuses as ``error="budget"``
        or not at all). Raises :class:`ServerDown` when the server went away."""
        ...

    def info(self) -> dict[str, Any]:
        """This transport's own entries for the manifest's back-end stats."""
        ...

    def close(self) -> None: ...


def merge_logprobs(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """``{token text: logprob}`` of one position's alternatives. Different tokens shown with the
    same text (every byte piece that does not complete a character is shown as ``""``) are
    combined with logsumexp: their probabilities add up.

    >>> round(merge_logprobs([("", math.log(0.2)), ("a", -1.0), ("", math.log(0.3))])[""], 6)
    -0.693147
    """
    alts: dict[str, float] = {}
    for text, value in pairs:
        old = alts.get(text)
        if old is None:
            alts[text] = value
        else:
            hi = max(old, value)
            alts[text] = hi + math.log(math.exp(old - hi) + math.exp(value - hi))
    return alts
