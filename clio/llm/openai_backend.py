"""The ``openai`` back-end: any OpenAI-compatible chat server (vLLM, SGLang, OpenAI, ...).

This module is the transport (:class:`OpenAITransport`): how calls are made, retried and given up
on. The cache, dedupe, budget, counters and progress are the shared wrapper's
(:class:`bailclio.llm.backend.Backend`); :class:`OpenAIBackend` is the two together.

Requests run on asyncio with at most ``max_concurrency`` in flight, so a server stays busy.
Failures are retried by our own
loop (the client's built-in retries are off) with exponential backoff and full jitter on HTTP
429/408/5xx, connection errors, timeouts and unreadable responses, honouring ``Retry-After``.
After ``max_retries`` retries the item fails (``ChatResult.error``) and the run goes on.

A circuit breaker stops a run against a server that went away: when at least
``breaker_threshold`` of the last ``breaker_window`` attempts failed for transport reasons
(connection refused or reset, timeouts, HTTP 5xx; not 429 or other answers), the calls in flight
are cancelled, nothing more is sent, and ``generate`` raises
:class:`~bailclio.errors.LLMUnavailable` naming the server, the failures and the cache that keeps
every completed call (a rerun resumes from it). Before any work, the commands check the server
with :func:`bailclio.llm.server_check.check_server`.

A per-run budget (``max_calls`` HTTP calls, ``max_total_tokens`` prompt+completion tokens) stops
cleanly: calls in flight finish and are cached, items not started get ``error="budget"``. Because
calls run concurrently, the token budget can be overshot by the calls in flight when it is hit.

Prefill (``ChatRequest.prefill``) is sent as a final assistant message with vLLM's
``continue_final_message=True, add_generation_prompt=False``; ``Choice.text`` is the continuation
only, without the prefill. ``ChatRequest.json_schema`` is sent as ``response_format`` json_schema
when ``structured_output`` is on; if the server rejects that with HTTP 400 the back-end falls back
to ``json_object`` and then to the schema stated in the prompt, for the rest of its life.

    >>> from support.scripted_server import ScriptedServer
    >>> with ScriptedServer() as srv:
    ...     be = OpenAIBackend("m", base_url=srv.base_url, progress=False)
    ...     req = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    ...     [r.text for r in be.generate([req])]
    ['echo: hi']
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai

from bailclio.llm.backend import Backend, wrapper_settings
from bailclio.llm.base import ChatRequest, ChatResult, Meter, ServerDown
from bailclio.llm.breaker import Breaker
from bailclio.llm.cache import LLMCache
from bailclio.llm.openai_wire import (
    JSON_MODES,
    other_tokens_param,
    parse_response,
    request_kwargs,
    retry_after_s,
    short_error,
)

if TYPE_CHECKING:
    from bailclio.config import LLMConfig

Done = Callable[[int, ChatResult], None]


class OpenAITransport:
    """Calls to an OpenAI-compatible server: bounded concurrency, retries, circuit breaker."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        structured_output: bool = True,
        max_tokens_param: str = "auto",
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        breaker_window: int = 16,
        breaker_threshold: float = 0.75,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key or os.environ.get(api_key_env) or "EMPTY"
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self.json_mode = "json_schema" if structured_output else "prompt"
        # "auto" sends max_tokens and switches to max_completion_tokens when a server asks for it
        self.max_tokens_param = "max_tokens" if max_tokens_param == "auto" else max_tokens_param
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._ssl_context: ssl.SSLContext | None = None
        self.breaker = Breaker(base_url or "https://api.openai.com/v1", breaker_window, breaker_threshold)

    def info(self) -> dict[str, Any]:
        return {
            "json_mode": self.json_mode,
            "max_tokens_param": self.max_tokens_param,
            "max_concurrency": self.max_concurrency,
        }

    def close(self) -> None:
        pass

    def send(self, requests: list[ChatRequest], meter: Meter, done: Done) -> None:
        """Run every request on asyncio (on a thread of its own when called from a running loop)."""
        coro = self._run(requests, meter, done)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, coro).result()
        if self.breaker.outage is not None:
            raise ServerDown(self.breaker.outage)

    def _client(self) -> openai.AsyncOpenAI:
        # One small client per worker: httpx's connection pool scans all its connections on every
        # request, which costs more than the request itself at high concurrency.
        if self._ssl_context is None:  # loading the CA bundle is slow: once per back-end
            self._ssl_context = ssl.create_default_context()
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=httpx.AsyncClient(
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
                timeout=httpx.Timeout(self.timeout_s),
                verify=self._ssl_context,
            ),
        )

    async def _run(self, requests: list[ChatRequest], meter: Meter, done: Done) -> None:
        if self.breaker.outage is not None:
            return
        clients = [self._client() for _ in range(min(self.max_concurrency, len(requests)))]
        todo = iter(enumerate(requests))
        self.breaker.tripped = tripped = asyncio.Event()

        async def worker(client: openai.AsyncOpenAI) -> None:
            for j, req in todo:
                if tripped.is_set():
                    return
                done(j, await self._call(client, req, meter))

        tasks = [asyncio.create_task(worker(c)) for c in clients]

        async def breaker() -> None:  # the breaker opened: calls in flight are abandoned
            await tripped.wait()
            for t in tasks:
                t.cancel()

        watcher = asyncio.create_task(breaker())
        try:
            finished = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            watcher.cancel()
            self.breaker.tripped = None
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for outcome in finished:
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                raise outcome

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_s))
        return delay

    async def _call(self, client: openai.AsyncOpenAI, req: ChatRequest, meter: Meter) -> ChatResult:
        attempt = 0
        while True:
            if not meter.allow():
                return ChatResult(error="budget")
            json_mode = self.json_mode
            tokens_param = self.max_tokens_param
            retry_after: float | None = None
            try:
                kw = request_kwargs(req, self.model, json_mode, tokens_param)
                result = parse_response(await client.chat.completions.create(**kw))
            except openai.BadRequestError as exc:
                other = other_tokens_param(short_error(exc, 1000), tokens_param)
                if other is not None:  # e.g. "use max_completion_tokens instead": switch and resend
                    if self.max_tokens_param == tokens_param:
                        self.max_tokens_param = other
                    continue
                if req.json_schema is not None and json_mode != "prompt":
                    # The server cannot do this structured-output mode: step down and resend.
                    if self.json_mode == json_mode:
                        self.json_mode = JSON_MODES[JSON_MODES.index(json_mode) + 1]
                    continue
                return ChatResult(error=f"http 400: {short_error(exc)}")
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status != 408 and status < 500:
                    self.breaker.record(None)
                    return ChatResult(error=f"http {status}: {short_error(exc)}")
                err = f"http {status}"
                if status >= 500:
                    self.breaker.record(err)
                retry_after = retry_after_s(getattr(exc.response, "headers", None))
            except openai.APITimeoutError:
                err = "timeout"
                self.breaker.record(err)
            except openai.APIConnectionError:
                err = "connection error"
                self.breaker.record(err)
            except Exception as exc:  # unreadable body, missing fields...
                err = f"bad response ({type(exc).__name__})"
                self.breaker.record(None)
            else:
                self.breaker.record(None)
                meter.spend(result)
                return result
            if attempt >= self.max_retries:
                return ChatResult(error=f"{err} after {attempt + 1} attempts")
            if self.breaker.outage is not None:
                return ChatResult(error=f"{err}; LLM server unavailable")
            meter.retried()
            await self.breaker.pause(self._backoff(attempt, retry_after))
            attempt += 1


class OpenAIBackend(Backend):
    """The ``openai`` back-end: :class:`OpenAITransport` behind the shared cache, dedupe, budget,
    counters and progress. Keyword arguments go to the transport, except ``cache``,
    ``max_calls``, ``max_total_tokens``, ``default_max_tokens``, ``default_temperature`` and
    ``progress``, which are the wrapper's."""

    transport: OpenAITransport

    def __init__(
        self,
        model: str,
        *,
        cache: LLMCache | str | Path | None = None,
        max_calls: int | None = None,
        max_total_tokens: int | None = None,
        default_max_tokens: int = 512,
        default_temperature: float = 0.0,
        progress: bool = True,
        **transport: Any,
    ) -> None:
        super().__init__(
            OpenAITransport(model, **transport),
            cache=cache,
            max_calls=max_calls,
            max_total_tokens=max_total_tokens,
            default_max_tokens=default_max_tokens,
            default_temperature=default_temperature,
            progress=progress,
        )


def from_config(cfg: LLMConfig, cache: str | Path | None, *, progress: bool = True) -> OpenAIBackend:
    """The ``openai`` back-end as ``[llm]`` configures it (the registry's factory)."""
    assert cfg.model is not None
    return OpenAIBackend(
        cfg.model,
        cache=cache,
        progress=progress,
        **wrapper_settings(cfg),
        base_url=cfg.base_url,
        api_key_env=cfg.api_key_env,
        max_concurrency=cfg.max_concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        structured_output=cfg.structured_output,
        max_tokens_param=cfg.max_tokens_param,
        breaker_window=cfg.breaker_window,
        breaker_threshold=cfg.breaker_threshold,
    )
