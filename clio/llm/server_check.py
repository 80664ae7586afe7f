"""The preflight of the ``openai`` back-end: is there an OpenAI-compatible chat server at the URL?

:func:`check_server` sends one 1-token chat request before any work and demands a JSON chat
completion of the right shape (an object whose ``choices[0].message`` is an object). Anything else
raises :class:`~bailclio.errors.LLMUnavailable` (one line naming the URL and what was wrong; the
CLI exits with status 3 before anything is written or replaced): a refused connection, no answer
within ``timeout_s``, refused credentials, an unknown model, an error status, or a body that is not
a chat completion (an HTML page, a proxy's login form, JSON of another shape).

A server that answers HTTP 503 is taken to be still loading its model (llama.cpp and vLLM answer
``503 Loading model`` while they start): the check says on stderr that it waits, asks again every
second or two, and gives up after ``wait_s`` seconds.

The request carries the header ``X-Bailclio-Preflight: 1`` so a server's logs (and the scripted
test server) can tell the check from the work.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import httpx

from bailclio.errors import LLMUnavailable, UserError
from bailclio.llm.openai_wire import other_tokens_param

if TYPE_CHECKING:
    from bailclio.config import LLMConfig

log = logging.getLogger("bailclio")

PREFLIGHT_HEADER = "X-Bailclio-Preflight"
POLL_S = 2.0  # the longest pause between two checks of a loading server


def describe_error(exc: BaseException) -> str:
    """A transport error in a few words: the innermost cause's message (e.g. Connection refused)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _snippet(response: httpx.Response) -> str:
    return repr(" ".join(response.text.split())[:120])


def _error_message(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response)
    err = body.get("error") if isinstance(body, dict) else None
    msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
    return repr(str(msg)[:160]) if msg else _snippet(response)


def shape_problem(response: httpx.Response) -> str | None:
    """Why a 200 answer is not a chat completion, or None when it is one."""
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    try:
        body: Any = response.json()
    except ValueError:
        return f"a body that is not JSON ({kind}: {_snippet(response)})"
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices:
        return f"JSON that is not a chat completion (no choices: {_snippet(response)})"
    first = choices[0]
    if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
        return f"JSON that is not a chat completion (no choices[0].message: {_snippet(response)})"
    return None


def check_server(
    base_url: str | None,
    model: str,
    *,
    api_key: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 15.0,
    wait_s: float = 60.0,
    max_tokens_param: str = "auto",
) -> None:
    """Raise :class:`~bailclio.errors.LLMUnavailable` unless ``base_url`` answers a 1-token chat
    request for ``model`` with a JSON chat completion (see the module docstring)."""
    url = (base_url or "https://api.openai.com/v1").rstrip("/")
    key = api_key or os.environ.get(api_key_env) or "EMPTY"
    headers = {"Authorization": f"Bearer {key}", PREFLIGHT_HEADER: "1"}
    tokens_param = "max_tokens" if max_tokens_param == "auto" else max_tokens_param
    what = "a 1-token chat request"
    deadline: float | None = None
    switched = False
    while True:
        body = {"model": model, "messages": [{"role": "user", "content": "ping"}], tokens_param: 1}
        r = _post(url, body, headers, timeout_s)
        if r.status_code == 503:
            now = time.monotonic()
            if deadline is None:
                deadline = now + wait_s
                if wait_s > 0:
                    log.warning(
                        f"[bailclio] LLM server {url} is not ready (HTTP 503: {_error_message(r)}); "
                        f"waiting up to {wait_s:g} s for it to load its model (llm.preflight_wait_s)"
                    )
            if now >= deadline:
                waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
                raise LLMUnavailable(
                    f"LLM server {url}: {what} still answered HTTP 503{waited}: {_error_message(r)}"
                )
            time.sleep(min(POLL_S, max(deadline - now, 0.05)))
            continue
        if r.status_code == 400 and not switched:
            other = other_tokens_param(r.text, tokens_param)
            if other is not None:  # e.g. "use max_completion_tokens instead": ask again with it
                tokens_param, switched = other, True
                continue
        break
    _judge(r, url, model, what, api_key_env)


def check_config(cfg: LLMConfig) -> None:
    """:func:`check_server` for the server ``[llm]`` configures."""
    assert cfg.model is not None
    check_server(
        cfg.base_url,
        cfg.model,
        api_key_env=cfg.api_key_env,
        timeout_s=cfg.preflight_timeout_s,
        wait_s=cfg.preflight_wait_s,
        max_tokens_param=cfg.max_tokens_param,
    )


def _judge(r: httpx.Response, url: str, model: str, what: str, api_key_env: str) -> None:
    status = r.status_code
    if status in (401, 403):
        raise LLMUnavailable(
            f"LLM server {url}: {what} refused with HTTP {status} (check the key in ${api_key_env})"
        )
    if status == 404:
        raise LLMUnavailable(
            f"LLM server {url}: {what} for model {model!r} answered HTTP 404: {_error_message(r)} "
            "(is the model name right, and the base URL the one ending in /v1?)"
        )
    if status != 200:
        raise LLMUnavailable(f"LLM server {url}: {what} answered HTTP {status}: {_error_message(r)}")
    problem = shape_problem(r)
    if problem is not None:
        raise LLMUnavailable(
            f"LLM server {url}: {what} answered HTTP 200 with {problem}; "
            "is this an OpenAI-compatible chat server (the base URL ending in /v1)?"
        )


def _post(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> httpx.Response:
    path = "/chat/completions"
    try:
        return httpx.post(url + path, json=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise LLMUnavailable(
            f"LLM server {url}: no answer to POST {path} within {timeout_s:g} s "
            f"({describe_error(exc)}); is it running and reachable?"
        ) from exc
    except httpx.InvalidURL as exc:
        raise UserError(f"llm.base_url: {url!r} is not a valid URL ({exc})") from exc
    except httpx.HTTPError as exc:
        raise LLMUnavailable(
            f"LLM server {url}: POST {path} failed: {describe_error(exc)}; is it running and reachable?"
        ) from exc
