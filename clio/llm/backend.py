"""The one wrapper every back-end is: a :class:`~bailclio.llm.base.Transport` (which makes the calls)
plus the on-disk cache, dedupe, the per-run budget, the counters and the progress bar.

For each batch, :meth:`Backend.generate` answers every request whose cache key is in the cache
from it, sends each remaining distinct request once, stores each completed call in the cache as
soon as it completes (a killed run keeps them) and gives every request its result, in order. The
cache key is :meth:`ChatRequest.cache_key` with the transport's ``name`` and ``model``, so a cache
written by any earlier version with the same requests is replayed.

    >>> from bailclio.llm.base import ChatResult, Choice
    >>> class Echo:
    ...     name, model = "echo", "m"
    ...     def send(self, requests, meter, done):
    ...         for i, r in enumerate(requests):
    ...             if meter.allow():
    ...                 done(i, ChatResult(choices=[Choice(text=r.messages[-1]["content"])]))
    ...     def info(self): return {}
    ...     def close(self): pass
    >>> be = Backend(Echo(), max_calls=1, progress=False)
    >>> [r.text or r.error for r in be.generate([be.make_request([{"role": "user", "content": t}])
    ...                                          for t in ("a", "a", "b")])]
    ['a', 'a', 'budget']
    >>> be.stats()["calls"], be.budget_exhausted
    (1, True)
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from bailclio.errors import LLMUnavailable
from bailclio.llm.base import ChatRequest, ChatResult, Meter, ServerDown, Transport
from bailclio.llm.cache import LLMCache

if TYPE_CHECKING:
    from bailclio.config import LLMConfig


def wrapper_settings(cfg: LLMConfig) -> dict[str, Any]:
    """The wrapper's keyword arguments that ``[llm]`` sets (budget and request defaults)."""
    return {
        "max_calls": cfg.max_calls,
        "max_total_tokens": cfg.max_total_tokens,
        "default_max_tokens": cfg.max_tokens,
        "default_temperature": cfg.temperature,
    }


class Backend:
    """An :class:`~bailclio.llm.base.LLMBackend` made of a transport and the shared plumbing."""

    def __init__(
        self,
        transport: Transport,
        *,
        cache: LLMCache | str | Path | None = None,
        max_calls: int | None = None,
        max_total_tokens: int | None = None,
        default_max_tokens: int = 512,
        default_temperature: float = 0.0,
        progress: bool = True,
    ) -> None:
        self.transport = transport
        self.name = transport.name
        self.model = transport.model
        self.cache = LLMCache(cache) if isinstance(cache, str | Path) else cache
        self.meter = Meter(max_calls, max_total_tokens)
        self.default_max_tokens = default_max_tokens
        self.default_temperature = default_temperature
        self.progress = progress
        self._outage: str | None = None

    @property
    def max_calls(self) -> int | None:
        return self.meter.max_calls

    @property
    def max_total_tokens(self) -> int | None:
        return self.meter.max_total_tokens

    @property
    def budget_exhausted(self) -> bool:
        return self.meter.exhausted

    @property
    def outage(self) -> str | None:
        """Why the transport's server was given up on (None while it answers)."""
        return self._outage

    def make_request(self, messages: list[dict[str, Any]], **kwargs: Any) -> ChatRequest:
        """A :class:`ChatRequest` with this back-end's configured max_tokens and temperature."""
        kwargs.setdefault("max_tokens", self.default_max_tokens)
        kwargs.setdefault("temperature", self.default_temperature)
        return ChatRequest(messages=messages, **kwargs)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.name, "model": self.model}
        out.update({k: (round(v, 3) if k == "wall_s" else int(v)) for k, v in self.meter.counts.items()})
        out.update(self.transport.info())
        return out

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        self.transport.close()

    def generate(self, requests: list[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Run every request (cache first, each distinct request once); results in request order.
        Raises :class:`~bailclio.errors.LLMUnavailable` when the server went away, after caching
        every completed call."""
        t0 = time.perf_counter()
        counts = self.meter.counts
        keys = [r.cache_key(self.name, self.model) for r in requests]
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        results: list[ChatResult | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, (req, key) in enumerate(zip(requests, keys, strict=True)):
            if key in hits:
                results[i] = replace(hits[key], tag=req.tag)
                counts["cache_hits"] += 1
            else:
                groups.setdefault(key, []).append(i)
        group_keys, members = list(groups), list(groups.values())
        bar = tqdm(
            total=len(requests),
            initial=len(requests) - sum(map(len, members)),
            desc=desc,
            unit="req",
            disable=not self.progress or not requests,
            leave=False,
        )

        def done(j: int, result: ChatResult) -> None:
            if result.ok and self.cache is not None:
                self.cache.put(group_keys[j], result)
            for i in members[j]:
                results[i] = replace(result, tag=requests[i].tag)
            bar.update(len(members[j]))

        try:
            if members and self._outage is None:
                self.transport.send([requests[m[0]] for m in members], self.meter, done)
        except ServerDown as exc:
            self._outage = str(exc)
        finally:
            bar.close()
            counts["wall_s"] += time.perf_counter() - t0
        out = self._finish(results)
        if self._outage is not None:
            raise LLMUnavailable(self.outage_message(), resumable=True)
        return out

    def _finish(self, results: list[ChatResult | None]) -> list[ChatResult]:
        """Fill requests that never ran and count budget skips and failures."""
        if self._outage is not None:
            missing = "not run (LLM server unavailable)"
        else:
            missing = "budget" if self.meter.exhausted else "not run"
        out = [r if r is not None else ChatResult(error=missing) for r in results]
        for r in out:
            if r.error == "budget":
                self.meter.counts["budget_skipped"] += 1
            elif r.error is not None:
                self.meter.counts["failures"] += 1
        return out

    def outage_message(self) -> str:
        cached = self.cache.path if self.cache is not None else None
        where = f"the cache {cached}" if cached else "no cache"
        return (
            f"{self._outage}; stopped early with {int(self.meter.counts['failures'])} failed requests; "
            f"every completed call is kept in {where}: rerun the same command once the server is "
            "back to resume"
        )
