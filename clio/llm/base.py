"""The one interface every LLM back-end implements, and the records it speaks.

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


class BackendStats:
    """What the back-ends share: request defaults, the budget flag and the :data:`STAT_KEYS`
    counters. A back-end sets ``model``, ``default_max_tokens`` and ``default_temperature`` and
    calls :meth:`_init_stats` in its constructor."""

    name: str
    model: str
    default_max_tokens: int
    default_temperature: float
    _budget_hit: bool
    _stats: dict[str, float]

    def _init_stats(self) -> None:
        self._budget_hit = False
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._stats["wall_s"] = 0.0

    def make_request(self, messages: list[dict[str, Any]], **kwargs: Any) -> ChatRequest:
        """A :class:`ChatRequest` with this back-end's configured max_tokens and temperature."""
        kwargs.setdefault("max_tokens", self.default_max_tokens)
        kwargs.setdefault("temperature", self.default_temperature)
        return ChatRequest(messages=messages, **kwargs)

    @property
    def budget_exhausted(self) -> bool:
        return self._budget_hit

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.name, "model": self.model}
        out.update({k: (round(v, 3) if k == "wall_s" else int(v)) for k, v in self._stats.items()})
        return out

    def _finish(self, results: list[ChatResult | None], missing: str) -> list[ChatResult]:
        """Fill requests that never ran with ``missing`` and count budget skips and failures."""
        out = [r if r is not None else ChatResult(error=missing) for r in results]
        for r in out:
            if r.error == "budget":
                self._stats["budget_skipped"] += 1
            elif r.error is not None:
                self._stats["failures"] += 1
        return out
