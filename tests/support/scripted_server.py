"""A scripted OpenAI-compatible chat server on a real 127.0.0.1 socket, for tests and benchmarks.

It speaks HTTP/1.1 (keep-alive) over asyncio in a background thread and implements
``POST /v1/chat/completions`` and ``GET /v1/models`` the way OpenAI and vLLM do: ``n``,
``response_format`` (``json_object`` / ``json_schema``), ``tools`` (replies with ``tool_calls`` and
``finish_reason="tool_calls"``), ``logprobs`` + ``top_logprobs`` (``choices[].logprobs.content[]``
entries ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``), vLLM's
``continue_final_message`` / ``add_generation_prompt`` for assistant prefill, and ``usage``.

Usage::

    from support.scripted_server import Reply, ScriptedServer

    with ScriptedServer(latency_ms=50) as srv:           # srv.base_url == "http://127.0.0.1:PORT/v1"
        srv.push(Reply(status=429, retry_after=0.2))      # queue: consumed one per request, FIFO
        srv.push(Reply(text="hello"))
        ...                                               # point a client at srv.base_url
        srv.requests        # every chat request body received (dicts), in arrival order
        srv.max_in_flight   # highest number of chat requests being handled at once

How a reply is chosen for each chat request: the next queued :class:`Reply` if any (``push``),
else ``handler(body)`` if a handler was given and it returns something other than ``None``, else
the default: for ``response_format`` json requests a minimal JSON instance of the schema (or
``{}``), otherwise ``"echo: <last user message>"``. A handler may return a :class:`Reply` or a
plain string (the answer text).

Behaviours a :class:`Reply` can script:

* ``Reply(text="...")`` answer text; ``text=["a", "b"]`` gives one text per choice (``n``).
* ``Reply(tool_calls=[{"name": "end_conversation", "arguments": {"reason": "x"}}])`` answers with a
  tool call (arguments may be a dict or a JSON string); ``finish_reason`` becomes ``"tool_calls"``.
* ``Reply(logprobs=[[("Yes", -0.01), ("No", -4.6)], ...])``: one list per generated position, the
  first pair is the sampled token, the rest its alternatives (trimmed to the request's
  ``top_logprobs``); the text defaults to the sampled tokens joined. Without it, a request with
  ``logprobs: true`` gets synthetic logprobs for the reply's whitespace tokens.
* ``prompt_logprobs`` (vLLM's extra parameter) is answered like vLLM: a top-level
  ``prompt_logprobs`` list with ``null`` for the first prompt token and
  ``{token_id: {logprob, rank, decoded_token}}`` for each other one, the prompt's own token first.
  The prompt is the chat rendered as ``role: content`` lines (no newline after a continued final
  message), cut into whitespace tokens whose non-ASCII characters are split into 2-byte pieces
  (so 🔄 and 🟢 are two pieces each, sharing the first); ids are stable per server. Each token's
  logprob is -1.0 unless ``Reply(prompt_logprobs={"<piece>": logprob})`` names its text (a
  piece that is not valid UTF-8 is named by its bytes, e.g. ``b"\\x94\\x84"``); such pieces
  are shown as ``""`` like vLLM does. ``ScriptedServer(supports_prompt_logprobs=False)`` ignores
  the parameter.
* ``Reply(delay_ms=500, ...)`` waits before answering (added to the server's ``latency_ms``).
* ``Reply(status=429, retry_after=1.5)`` / ``Reply(status=500)`` / ``Reply(status=503)``: an
  OpenAI-style error body, with a ``Retry-After`` header when ``retry_after`` is set.
* ``Reply(drop=True)`` closes the connection after reading the request, without answering;
  ``Reply(truncate=True)`` sends the headers and half the JSON body, then closes.
* ``Reply(raw_body='{"choices": [')`` sends that body verbatim with status 200 (malformed
  response); malformed or truncated *content* is just ``Reply(text='{"label": "ab')``.
* ``finish_reason``, ``prompt_tokens``, ``completion_tokens`` override the computed values.

Failures of a whole server: ``srv.die_after(n)`` lets ``n`` more chat requests through, then the
server dies like a killed process (stops listening, so new connections are refused, and drops
every open connection without answering); :func:`closed_port` gives a port nothing listens on;
:class:`SilentServer` accepts connections and never answers (a hung server).

The preflight check (a chat request with the header ``X-Bailclio-Preflight: 1``) is recorded in
``srv.preflights``, not in ``requests``; it does not consume the queue nor reach the handler: it
gets ``srv.preflight_reply`` (a :class:`Reply`, or a function of the body returning one or None)
when set, else the default reply. ``ScriptedServer(strict_model=True)``
answers a chat request for another model than its own with 404, like vLLM. Whole-server states, on
every route: ``srv.html = True`` answers everything with an HTML page and status 200 (a web server
or proxy at the URL); ``srv.loading(seconds)`` answers 503 "Loading model" for that long, like
llama.cpp and vLLM while they load (``srv.refused_while_loading`` counts those requests).

``ScriptedServer(serves_models=False)`` answers ``GET /v1/models`` with 404, like servers without
that route. ``ScriptedServer(supports_logprobs=False)`` ignores ``logprobs`` (``"logprobs": null``), like
servers and APIs without them. ``ScriptedServer(supports_json_schema=False)`` answers
``response_format: json_schema`` with HTTP 400 like servers without structured output. A prefill
request (``continue_final_message: true``) must end with an assistant message and set
``add_generation_prompt: false`` or it gets a 400, as on vLLM; the reply is the continuation only.
Such invalid requests are answered with 400 before the queue or the handler is consulted (they are
still recorded in ``requests``).

Run standalone (a separate process, e.g. for benchmarks)::

    python -m support.scripted_server --latency-ms 50     # prints "PORT <n>", serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_TOKEN_RE = re.compile(r"\s*\S+|\s+")


@dataclass
class Reply:
    """One scripted behaviour for one chat request (see the module docstring)."""

    text: str | list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[list[tuple[str, float]]] | None = None
    prompt_logprobs: dict[str | bytes, float] | None = None
    delay_ms: float = 0.0
    status: int = 200
    retry_after: float | None = None
    error_message: str | None = None
    drop: bool = False
    truncate: bool = False
    raw_body: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Handler = Callable[[dict[str, Any]], "Reply | str | None"]


def _n_tokens(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_message(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat request body ("" if none)."""
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def example_from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A minimal instance of a JSON schema (required properties only, first enum value...)."""
    root = root or schema
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        defs = root.get("$defs") or root.get("definitions") or {}
        return example_from_schema(defs.get(ref, {}), root)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_from_schema(schema[key][0], root)
    typ = schema.get("type", "object")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object":
        props = schema.get("properties") or {}
        required = schema.get("required", list(props))
        return {k: example_from_schema(props[k], root) for k in required if k in props}
    if typ == "array":
        n = int(schema.get("minItems", 0))
        return [example_from_schema(schema.get("items", {}), root) for _ in range(n)]
    if typ == "string":
        return "x" * int(schema.get("minLength", 1))
    if typ == "integer":
        return int(schema.get("minimum", 0))
    if typ == "number":
        return float(schema.get("minimum", 0))
    if typ == "boolean":
        return False
    return None


def _logprob_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


class ScriptedServer:
    """OpenAI-compatible chat server on 127.0.0.1 (random free port) driven by a script.

    ``latency_ms`` is added to every chat request; ``handler`` answers requests the queue does
    not. Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        latency_ms: float = 0.0,
        model: str = "scripted-model",
        supports_json_schema: bool = True,
        supports_logprobs: bool = True,
        supports_prompt_logprobs: bool = True,
        serves_models: bool = True,
        strict_model: bool = False,
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.latency_ms = latency_ms
        self.model = model
        self.supports_json_schema = supports_json_schema
        self.supports_logprobs = supports_logprobs
        self.supports_prompt_logprobs = supports_prompt_logprobs
        self.serves_models = serves_models
        self.strict_model = strict_model
        self.html = False
        self.preflight_reply: Reply | Handler | None = None
        self.preflights: list[dict[str, Any]] = []
        self.refused_while_loading = 0
        self._loading_until = 0.0
        self._vocab: dict[bytes, int] = {}
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.n_connections = 0
        self._queue: collections.deque[Reply] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._start_error: BaseException | None = None
        self._die_at: int | None = None
        self.dead = False

    # ---- scripting ---------------------------------------------------------------------------
    def push(self, *replies: Reply | str) -> None:
        """Queue behaviours, consumed one per incoming chat request in arrival order."""
        for r in replies:
            self._queue.append(Reply(text=r) if isinstance(r, str) else r)

    @property
    def pending(self) -> int:
        """Queued behaviours not consumed yet."""
        return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests, the in-flight maximum, any queued behaviours and the scripted
        preflight reply and whole-server states (HTML, loading)."""
        self.requests.clear()
        self.preflights.clear()
        self.preflight_reply = None
        self.html = False
        self._loading_until = 0.0
        self._queue.clear()
        self.max_in_flight = self.in_flight

    def loading(self, seconds: float) -> None:
        """Answer every request with 503 "Loading model" for the next ``seconds``."""
        self._loading_until = time.monotonic() + seconds

    def die_after(self, n: int) -> None:
        """After ``n`` more chat requests, die: stop listening and drop every connection."""
        self._die_at = len(self.requests) + n

    def _die(self) -> None:
        self.dead = True
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        for task in list(self._conn_tasks):
            if task is not current:
                task.cancel()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until no chat request is being handled (e.g. one the client gave up on)."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.in_flight == 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._run, name="scripted-llm-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._start_error is not None:
            raise RuntimeError(f"scripted server failed to start: {self._start_error}")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._on_connection, "127.0.0.1", self.port, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.gather(*self._conn_tasks, return_exceptions=True)

    # ---- HTTP --------------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        self.n_connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split()
                if len(parts) < 2:
                    break
                method, path = parts[0].upper(), parts[1].split("?")[0]
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                keep = await self._dispatch(method, path, raw, writer, headers)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conn_tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra_headers: dict[str, str] | None = None,
        *,
        raw: str | None = None,
        truncate: bool = False,
        content_type: str = "application/json",
    ) -> bool:
        body = (raw if raw is not None else json.dumps(payload)).encode("utf-8")
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        head += [f"content-type: {content_type}", f"content-length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
        if truncate:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body[: len(body) // 2])
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True

    async def _dispatch(
        self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bool:
        if self.dead:
            writer.transport.abort()
            return False
        if self.html:
            return await self._send(
                writer, 200, None, raw=_HTML_PAGE, content_type="text/html; charset=utf-8"
            )
        if time.monotonic() < self._loading_until:
            self.refused_while_loading += 1
            return await self._send(writer, 503, _error("Loading model", 503))
        if path.rstrip("/") in ("/v1/models", "/models") and self.serves_models:
            if method != "GET":
                return await self._send(writer, 405, _error("method not allowed", 405))
            data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}]
            return await self._send(writer, 200, {"object": "list", "data": data})
        if path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return await self._send(writer, 404, _error(f"no route {path}", 404))
        if method != "POST":
            return await self._send(writer, 405, _error("method not allowed", 405))
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            return await self._send(writer, 400, _error(f"invalid JSON body: {exc}", 400))
        if self.strict_model and body.get("model") != self.model:
            return await self._send(
                writer, 404, _error(f"The model `{body.get('model')}` does not exist.", 404)
            )
        if headers.get("x-bailclio-preflight"):
            self.preflights.append(body)
            scripted = self.preflight_reply
            reply = scripted(body) if callable(scripted) else scripted
            if isinstance(reply, str):
                reply = Reply(text=reply)
            return await self._answer(writer, body, reply or self._default_reply(body))
        self.requests.append(body)
        if self._die_at is not None and len(self.requests) > self._die_at:
            self._die()
            writer.transport.abort()
            return False
        return await self._answer(writer, body, None)

    async def _answer(self, writer: asyncio.StreamWriter, body: dict[str, Any], reply: Reply | None) -> bool:
        """Answer one chat request with ``reply``, or the one the script chooses."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            problem = self._validate(body)
            if problem:  # rejected up front, like a real server; the script is not consulted
                return await self._send(writer, 400, _error(problem, 400))
            reply = reply or self._choose(body)
            delay = (self.latency_ms + reply.delay_ms) / 1000.0
            if delay > 0:
                await asyncio.sleep(delay)
            if reply.drop:
                writer.transport.abort()
                return False
            if reply.raw_body is not None:
                return await self._send(writer, 200, None, raw=reply.raw_body)
            if reply.status != 200:
                headers = {}
                if reply.retry_after is not None:
                    headers["retry-after"] = f"{reply.retry_after:g}"
                msg = reply.error_message or f"scripted error {reply.status}"
                return await self._send(
                    writer,
                    reply.status,
                    _error(msg, reply.status),
                    headers,
                    truncate=reply.truncate,
                )
            return await self._send(writer, 200, self._completion(body, reply), truncate=reply.truncate)
        finally:
            self.in_flight -= 1

    # ---- chat semantics ----------------------------------------------------------------------
    def _choose(self, body: dict[str, Any]) -> Reply:
        if self._queue:
            try:
                return self._queue.popleft()
            except IndexError:
                pass
        if self.handler is not None:
            out = self.handler(body)
            if isinstance(out, str):
                return Reply(text=out)
            if out is not None:
                return out
        return self._default_reply(body)

    @staticmethod
    def _default_reply(body: dict[str, Any]) -> Reply:
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            return Reply(text=json.dumps(example_from_schema(schema)))
        if fmt.get("type") == "json_object":
            return Reply(text="{}")
        return Reply(text="echo: " + last_user_message(body))

    def _validate(self, body: dict[str, Any]) -> str | None:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "messages must be a non-empty list"
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            if not self.supports_json_schema:
                return "response_format json_schema is not supported by this server"
            if not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
                return "response_format.json_schema.schema must be an object"
        if body.get("continue_final_message"):
            if body.get("add_generation_prompt", True):
                return "continue_final_message and add_generation_prompt cannot both be true"
            if msgs[-1].get("role") != "assistant":
                return "continue_final_message needs a final assistant message"
        top = body.get("top_logprobs")
        if top is not None and not body.get("logprobs"):
            return "top_logprobs needs logprobs: true"
        return None

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        if isinstance(reply.text, list):
            texts = (reply.text * n)[:n] if reply.text else [""] * n
        elif reply.text is not None:
            texts = [reply.text] * n
        elif reply.logprobs is not None:
            texts = ["".join(pos[0][0] for pos in reply.logprobs)] * n
        elif reply.tool_calls:
            texts = [""] * n
        else:
            texts = ["echo: " + last_user_message(body)] * n
        want_lp = bool(body.get("logprobs")) and self.supports_logprobs
        k = int(body.get("top_logprobs") or 0)
        choices = []
        completion_tokens = 0
        for i, text in enumerate(texts):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            finish = reply.finish_reason or "stop"
            if reply.tool_calls:
                message["content"] = text or None
                message["tool_calls"] = [
                    {
                        "id": f"call_{len(self.requests)}_{i}_{j}",
                        "type": "function",
                        "function": {
                            "name": tc["name"],
                            "arguments": tc.get("arguments", {})
                            if isinstance(tc.get("arguments"), str)
                            else json.dumps(tc.get("arguments", {})),
                        },
                    }
                    for j, tc in enumerate(reply.tool_calls)
                ]
                finish = reply.finish_reason or "tool_calls"
            choice: dict[str, Any] = {
                "index": i,
                "message": message,
                "finish_reason": finish,
                "logprobs": None,
            }
            if want_lp:
                positions = reply.logprobs or [
                    [(tok, -0.05)] + [(f"alt{a}", -3.0 - a) for a in range(max(k - 1, 0))]
                    for tok in _TOKEN_RE.findall(text)
                ]
                content = []
                for pos in positions:
                    entry = _logprob_entry(*pos[0])
                    entry["top_logprobs"] = [_logprob_entry(t, lp) for t, lp in pos[:k]]
                    content.append(entry)
                choice["logprobs"] = {"content": content}
            completion_tokens += _n_tokens(text) + len(reply.tool_calls or [])
            choices.append(choice)
        prompt_tokens = sum(_n_tokens(_content_text(m.get("content"))) + 3 for m in body["messages"])
        if reply.prompt_tokens is not None:
            prompt_tokens = reply.prompt_tokens
        if reply.completion_tokens is not None:
            completion_tokens = reply.completion_tokens
        out = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if body.get("prompt_logprobs") is not None and self.supports_prompt_logprobs:
            out["prompt_logprobs"] = self._prompt_logprobs(body, reply)
        return out

    def _prompt_logprobs(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any] | None]:
        """vLLM's ``prompt_logprobs`` for the rendered prompt (see the module docstring)."""
        scripted = {
            (k if isinstance(k, bytes) else k.encode("utf-8")): v
            for k, v in (reply.prompt_logprobs or {}).items()
        }
        out: list[dict[str, Any] | None] = []
        for i, piece in enumerate(prompt_pieces(body)):
            tid = self._vocab.setdefault(piece, len(self._vocab) + 1)
            if i == 0:
                out.append(None)
                continue
            try:
                shown = piece.decode("utf-8")
            except UnicodeDecodeError:
                shown = ""
            lp = scripted.get(piece, -1.0)
            out.append({str(tid): {"logprob": lp, "rank": 1, "decoded_token": shown}})
        return out


def render_prompt(body: dict[str, Any]) -> str:
    """The chat as the scripted server's template renders it: ``role: content`` lines, the final
    message left open when it is continued, ``assistant: `` appended for a generation prompt."""
    msgs = body.get("messages") or []
    lines = [f"{m.get('role')}: {_content_text(m.get('content'))}" for m in msgs]
    if body.get("continue_final_message"):
        return "\n".join(lines)
    text = "".join(line + "\n" for line in lines)
    if body.get("add_generation_prompt", True):
        text += "assistant: "
    return text


def prompt_pieces(body: dict[str, Any]) -> list[bytes]:
    """The scripted tokenization of the rendered prompt: whitespace tokens, with every non-ASCII
    character split into 2-byte pieces."""
    pieces: list[bytes] = []
    for tok in _TOKEN_RE.findall(render_prompt(body)):
        ascii_run = ""
        for ch in tok:
            if ord(ch) < 128:
                ascii_run += ch
                continue
            if ascii_run:
                pieces.append(ascii_run.encode("utf-8"))
                ascii_run = ""
            raw = ch.encode("utf-8")
            pieces.extend(raw[j : j + 2] for j in range(0, len(raw), 2))
        if ascii_run:
            pieces.append(ascii_run.encode("utf-8"))
    return pieces


_HTML_PAGE = "<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"


def _error(message: str, status: int) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        404: "not_found",
        429: "rate_limit_error",
        503: "unavailable_error",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible chat server.")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="scripted-model")
    args = ap.parse_args(argv)
    srv = ScriptedServer(latency_ms=args.latency_ms, model=args.model, port=args.port).start()
    print(f"PORT {srv.port}", flush=True)
    try:
        while True:  # serve until killed
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def closed_port() -> int:
    """A 127.0.0.1 port that nothing listens on (connections to it are refused)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SilentServer:
    """A hung server on 127.0.0.1: accepts connections, reads what is sent, never answers."""

    def __init__(self) -> None:
        import socket

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-llm-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self._conns:
            c.close()
        self._sock.close()
