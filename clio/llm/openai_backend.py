"""The ``openai`` back-end: any OpenAI-compatible chat server (vLLM, SGLang, OpenAI, ...).

Requests run on asyncio with at most ``max_concurrency`` in flight, so a server stays busy.
Every completed call is written to the on-disk cache at once; failures are retried by our own
loop (the client's built-in retries are off) with exponential backoff and full jitter on HTTP
429/408/5xx, connection errors, timeouts and unreadable responses, honouring ``Retry-After``.
After ``max_retries`` retries the item fails (``ChatResult.error``) and the run goes on.

A circuit breaker stops a run against a server that went away: when at least
``breaker_threshold`` of the last ``breaker_window`` attempts failed for transport reasons
(connection refused or reset, timeouts, HTTP 5xx; not 429 or other answers), the calls in flight
are cancelled, nothing more is sent, and :meth:`generate` raises
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
import collections
import concurrent.futures
import contextlib
import email.utils
import json
import math
import os
import random
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bailclio.errors import LLMUnavailable
from bailclio.llm.base import BackendStats, ChatRequest, ChatResult, Choice, ToolCall
from bailclio.llm.cache import LLMCache

_JSON_MODES = ("json_schema", "json_object", "prompt")


def _retry_after_s(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Reply with only a JSON object (no prose, no code fences) that conforms to this JSON "
        f"schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def _with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{instruction}"
    else:
        msgs.insert(0, {"role": "system", "content": instruction})
    return msgs


class _Budget(Exception):
    pass


class OpenAIBackend(BackendStats):
    """OpenAI-compatible HTTP back-end with bounded concurrency, retries, budget and cache."""

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
        max_calls: int | None = None,
        max_total_tokens: int | None = None,
        cache: LLMCache | str | Path | None = None,
        structured_output: bool = True,
        max_tokens_param: str = "auto",
        default_max_tokens: int = 512,
        default_temperature: float = 0.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        progress: bool = True,
        breaker_window: int = 16,
        breaker_threshold: float = 0.75,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key or os.environ.get(api_key_env) or "EMPTY"
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self.max_calls = max_calls
        self.max_total_tokens = max_total_tokens
        self.cache = LLMCache(cache) if isinstance(cache, str | Path) else cache
        self.json_mode = "json_schema" if structured_output else "prompt"
        # "auto" sends max_tokens and switches to max_completion_tokens when a server asks for it
        self.max_tokens_param = "max_tokens" if max_tokens_param == "auto" else max_tokens_param
        self._slots_checked = False
        self.default_max_tokens = default_max_tokens
        self.default_temperature = default_temperature
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.progress = progress
        self._ssl_context: ssl.SSLContext | None = None
        # the circuit breaker: True for each recent attempt that failed for a transport reason
        self.breaker_window = max(0, int(breaker_window))
        self.breaker_threshold = breaker_threshold
        self._recent: collections.deque[bool] = collections.deque(maxlen=max(1, self.breaker_window))
        self._recent_errors: collections.Counter[str] = collections.Counter()
        self._outage: str | None = None
        self._tripped: asyncio.Event | None = None
        self._init_stats()

    # ---- public API --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["json_mode"] = self.json_mode
        out["max_tokens_param"] = self.max_tokens_param
        out["max_concurrency"] = self.max_concurrency
        return out

    @property
    def outage(self) -> str | None:
        """Why the circuit breaker stopped this back-end (None while it is closed)."""
        return self._outage

    def _record(self, transport_error: str | None) -> None:
        """One attempt's outcome for the circuit breaker (``transport_error``: its reason)."""
        if self.breaker_window == 0 or self._outage is not None:
            return
        self._recent.append(transport_error is not None)
        if transport_error is not None:
            self._recent_errors[transport_error] += 1
        failed = sum(self._recent)
        if (
            len(self._recent) >= self.breaker_window
            and failed >= self.breaker_threshold * self.breaker_window
        ):
            reasons = ", ".join(f"{k}: {v}" for k, v in self._recent_errors.most_common(3))
            self._outage = (
                f"LLM server {self.base_url or 'https://api.openai.com/v1'} is failing: {failed} of the "
                f"last {len(self._recent)} calls failed ({reasons})"
            )
            if self._tripped is not None:
                self._tripped.set()

    def outage_message(self) -> str:
        cached = self.cache.path if self.cache is not None else None
        where = f"the cache {cached}" if cached else "no cache"
        return (
            f"{self._outage}; stopped early with {int(self._stats['failures'])} failed requests; "
            f"every completed call is kept in {where}: rerun the same command once the server is "
            "back to resume"
        )

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def generate(self, requests: list[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Run every request; results in request order (synchronous, shows a progress bar)."""
        coro = self.agenerate(requests, desc=desc)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside a running event loop: run ours on a separate thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro).result()

    async def agenerate(self, requests: list[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """The asynchronous form of :meth:`generate`."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        results: list[ChatResult | None] = [None] * len(requests)
        keys = [r.cache_key(self.name, self.model) for r in requests]
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        groups: dict[str, list[int]] = {}
        for i, (req, key) in enumerate(zip(requests, keys, strict=True)):
            if key in hits:
                results[i] = replace(hits[key], tag=req.tag)
                self._stats["cache_hits"] += 1
            else:
                groups.setdefault(key, []).append(i)
        bar = tqdm(
            total=len(requests),
            initial=len(requests) - sum(len(v) for v in groups.values()),
            desc=desc,
            unit="req",
            disable=not self.progress or not requests,
            leave=False,
        )
        try:
            if groups and self._outage is None:
                await self._run_groups(requests, groups, results, bar)
        finally:
            bar.close()
            self._stats["wall_s"] += time.perf_counter() - t0
        out = self._finish(results, "not run (LLM server unavailable)" if self._outage else "not run")
        if self._outage is not None:
            raise LLMUnavailable(self.outage_message(), resumable=True)
        return out

    # ---- internals ---------------------------------------------------------------------------
    async def _run_groups(
        self,
        requests: list[ChatRequest],
        groups: dict[str, list[int]],
        results: list[ChatResult | None],
        bar: Any,
    ) -> None:
        import httpx
        from openai import AsyncOpenAI

        # One small client per worker: httpx's connection pool scans all its connections on every
        # request, which costs more than the request itself at high concurrency.
        n_workers = min(self.max_concurrency, len(groups))
        if self._ssl_context is None:  # loading the CA bundle is slow: once per back-end
            self._ssl_context = ssl.create_default_context()
        clients = [
            AsyncOpenAI(
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
            for _ in range(n_workers)
        ]
        todo = iter(groups.items())
        self._tripped = tripped = asyncio.Event()

        async def worker(client: AsyncOpenAI) -> None:
            for key, idxs in todo:
                if tripped.is_set():
                    return
                req = requests[idxs[0]]
                res = await self._call(client, req)
                if res.ok and self.cache is not None:
                    self.cache.put(key, res)
                for i in idxs:
                    results[i] = replace(res, tag=requests[i].tag)
                bar.update(len(idxs))

        tasks = [asyncio.create_task(worker(c)) for c in clients]

        async def breaker() -> None:  # the breaker opened: calls in flight are abandoned
            await tripped.wait()
            for t in tasks:
                t.cancel()

        watcher = asyncio.create_task(breaker())
        try:
            done = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            watcher.cancel()
            self._tripped = None
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                raise outcome

    def _budget_left(self) -> bool:
        if self._budget_hit:
            return False
        s = self._stats
        if self.max_calls is not None and s["calls"] >= self.max_calls:
            self._budget_hit = True
        used = s["prompt_tokens"] + s["completion_tokens"]
        if self.max_total_tokens is not None and used >= self.max_total_tokens:
            self._budget_hit = True
        return not self._budget_hit

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the circuit breaker opens meanwhile."""
        tripped = self._tripped
        if tripped is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tripped.wait(), timeout=delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_s))
        return delay

    def _kwargs(self, req: ChatRequest, json_mode: str, tokens_param: str | None = None) -> dict[str, Any]:
        messages = [dict(m) for m in req.messages]
        kw: dict[str, Any] = {
            "model": self.model,
            tokens_param or self.max_tokens_param: req.max_tokens,
            "temperature": req.temperature,
        }
        if req.n != 1:
            kw["n"] = req.n
        if req.seed is not None:
            kw["seed"] = req.seed
        if req.tools:
            kw["tools"] = req.tools
        if req.top_logprobs is not None:
            kw["logprobs"] = True
            kw["top_logprobs"] = req.top_logprobs
        if req.json_schema is not None:
            if json_mode == "json_schema":
                kw["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": req.schema_name, "schema": req.json_schema},
                }
            else:
                messages = _with_instruction(messages, _schema_instruction(req.json_schema))
                if json_mode == "json_object":
                    kw["response_format"] = {"type": "json_object"}
        extra: dict[str, Any] = {}
        if req.prefill is not None:
            messages.append({"role": "assistant", "content": req.prefill})
            extra.update(continue_final_message=True, add_generation_prompt=False)
        if req.prompt_logprobs is not None:
            extra["prompt_logprobs"] = req.prompt_logprobs
        if extra:
            kw["extra_body"] = extra
        kw["messages"] = messages
        return kw

    async def _call(self, client: Any, req: ChatRequest) -> ChatResult:
        import openai

        attempt = 0
        while True:
            if not self._budget_left():
                return ChatResult(error="budget")
            json_mode = self.json_mode
            tokens_param = self.max_tokens_param
            self._stats["calls"] += 1
            retry_after: float | None = None
            try:
                resp = await client.chat.completions.create(**self._kwargs(req, json_mode, tokens_param))
                result = self._parse(resp)
            except openai.BadRequestError as exc:
                other = _other_tokens_param(exc, tokens_param)
                if other is not None:  # e.g. "use max_completion_tokens instead": switch and resend
                    if self.max_tokens_param == tokens_param:
                        self.max_tokens_param = other
                    continue
                if req.json_schema is not None and json_mode != "prompt":
                    # The server cannot do this structured-output mode: step down and resend.
                    if self.json_mode == json_mode:
                        self.json_mode = _JSON_MODES[_JSON_MODES.index(json_mode) + 1]
                    continue
                return ChatResult(error=f"http 400: {_short(exc)}")
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status != 408 and status < 500:
                    self._record(None)
                    return ChatResult(error=f"http {status}: {_short(exc)}")
                err = f"http {status}"
                if status >= 500:
                    self._record(err)
                retry_after = _retry_after_s(getattr(exc.response, "headers", None))
            except openai.APITimeoutError:
                err = "timeout"
                self._record(err)
            except openai.APIConnectionError:
                err = "connection error"
                self._record(err)
            except Exception as exc:  # unreadable body, missing fields...
                err = f"bad response ({type(exc).__name__})"
                self._record(None)
            else:
                self._record(None)
                self._stats["prompt_tokens"] += result.prompt_tokens
                self._stats["completion_tokens"] += result.completion_tokens
                return result
            if attempt >= self.max_retries:
                return ChatResult(error=f"{err} after {attempt + 1} attempts")
            if self._outage is not None:
                return ChatResult(error=f"{err}; LLM server unavailable")
            self._stats["retries"] += 1
            await self._pause(self._backoff(attempt, retry_after))
            attempt += 1

    @staticmethod
    def _parse(resp: Any) -> ChatResult:
        if not getattr(resp, "choices", None):
            raise ValueError("response has no choices")
        choices = []
        for ch in resp.choices:
            msg = ch.message
            calls = [
                ToolCall(name=tc.function.name, arguments=tc.function.arguments or "{}")
                for tc in (msg.tool_calls or [])
                if getattr(tc, "function", None) is not None
            ]
            choice = Choice(text=msg.content or "", tool_calls=calls, finish_reason=ch.finish_reason)
            content = getattr(ch.logprobs, "content", None) if ch.logprobs is not None else None
            if content is not None:
                choice.top_logprobs = []
                choice.tokens = []
                choice.token_logprobs = []
                for entry in content:
                    alts = _merge_alternatives(entry.top_logprobs or [])
                    alts.setdefault(entry.token, float(entry.logprob))
                    choice.top_logprobs.append(alts)
                    choice.tokens.append(entry.token)
                    choice.token_logprobs.append(float(entry.logprob))
            choices.append(choice)
        usage = resp.usage
        return ChatResult(
            choices=choices,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            prompt_logprobs=_prompt_logprobs(getattr(resp, "model_extra", None) or {}),
        )


def _other_tokens_param(exc: Exception, current: str) -> str | None:
    """The other name of the token limit when a 400 says the one sent is not supported."""
    text = _short(exc, 1000).lower()
    other = "max_completion_tokens" if current == "max_tokens" else "max_tokens"
    if current in text and other in text:
        return other
    return None


def _merge_alternatives(top: list[Any]) -> dict[str, float]:
    """``{token text: logprob}`` of one position's alternatives. Different tokens shown with the
    same text (vLLM shows every byte piece that does not complete a character as ``""``) are
    combined with logsumexp: their probabilities add up."""
    alts: dict[str, float] = {}
    for t in top:
        lp = float(t.logprob)
        old = alts.get(t.token)
        if old is None:
            alts[t.token] = lp
        else:
            hi = max(old, lp)
            alts[t.token] = hi + math.log(math.exp(old - hi) + math.exp(lp - hi))
    return alts


def _prompt_logprobs(extra: dict[str, Any]) -> list[dict[str, float] | None] | None:
    """vLLM's top-level ``prompt_logprobs`` (``[null, {token_id: {logprob, rank,
    decoded_token}}, ...]``) as ``[None, {token_id: logprob}, ...]``, the order kept (vLLM lists
    the prompt's own token first); None when the response has none."""
    raw = extra.get("prompt_logprobs")
    if not isinstance(raw, list):
        return None
    out: list[dict[str, float] | None] = []
    for entry in raw:
        if not isinstance(entry, dict):
            out.append(None)
            continue
        out.append({str(tid): float(v["logprob"] if isinstance(v, dict) else v) for tid, v in entry.items()})
    return out


def _short(exc: Exception, limit: int = 200) -> str:
    body = getattr(exc, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
    text = str(msg or exc).replace("\n", " ")
    return text[:limit]
