"""Structured replies: every answer validated against a pydantic model, bounded retries.

:func:`generate_structured` sends each request with the model's JSON schema, parses the reply
(tolerating code fences and leading prose, and prepending ``prefill`` when the request has one) and
validates it. A malformed or truncated reply is asked again up to ``max_attempts`` times in all;
each new attempt changes ``seed`` (and a greedy request gets ``retry_temperature``) so it has a new
cache key and is not served the same cached reply. An item that never validates is a failure with
the last reason; nothing is ever guessed.

    >>> from pydantic import BaseModel
    >>> from support.scripted_server import ScriptedServer
    >>> from bailclio.llm.openai_backend import OpenAIBackend
    >>> class Label(BaseModel):
    ...     name: str
    >>> with ScriptedServer(lambda body: '{"name": "refusal"}') as srv:
    ...     be = OpenAIBackend("m", base_url=srv.base_url, progress=False)
    ...     req = ChatRequest(messages=[{"role": "user", "content": "name it"}])
    ...     generate_structured(be, [req], Label)
    [(Label(name='refusal'), None)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bailclio.llm.base import ChatRequest, ChatResult, LLMBackend

M = TypeVar("M", bound=BaseModel)
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON object in a reply: the whole text, a fenced block, or the outermost braces."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text
    fence = _FENCE_RE.search(text)
    if fence:
        return fence.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        return text[start : end + 1]
    return text


def parse_reply(result: ChatResult, request: ChatRequest, model: type[M]) -> tuple[M | None, str | None]:
    """Validate one result against ``model``: ``(value, None)`` or ``(None, reason)``."""
    if not result.ok:
        return None, result.error
    if not result.choices:
        return None, "empty reply"
    choice = result.choices[0]
    text = (request.prefill or "") + choice.text
    if not text.strip() and choice.tool_calls:
        text = choice.tool_calls[0].arguments
    try:
        return model.model_validate_json(extract_json(text)), None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "reply"
        reason = f"invalid reply ({where}: {err['msg']})"
        if choice.finish_reason == "length":
            reason += " - truncated at max_tokens"
        return None, reason


def generate_structured(
    backend: LLMBackend,
    requests: list[ChatRequest],
    pydantic_model: type[M] | Sequence[type[M]],
    max_attempts: int = 3,
    *,
    retry_temperature: float | None = 0.7,
    desc: str = "llm",
    attempts_out: list[int] | None = None,
) -> list[tuple[M | None, str | None]]:
    """One ``(parsed, None)`` or ``(None, error)`` per request, in order.

    ``pydantic_model`` is one reply model for every request, or one per request (e.g. when each
    request offers its own choices). Requests without ``json_schema`` get their model's schema.
    Back-end failures (HTTP errors after the back-end's own retries, ``"budget"``) are not retried
    here; only invalid replies are. ``attempts_out``, when given, receives the number of attempts
    each request used.
    """
    models = (
        list(pydantic_model) if isinstance(pydantic_model, Sequence) else [pydantic_model] * len(requests)
    )
    if len(models) != len(requests):
        raise ValueError(f"{len(models)} reply models for {len(requests)} requests")
    base = [
        r
        if r.json_schema is not None
        else replace(
            r,
            json_schema=m.model_json_schema(),
            schema_name=re.sub(r"[^A-Za-z0-9_-]", "_", m.__name__)[:64] or "reply",
        )
        for r, m in zip(requests, models, strict=True)
    ]
    out: list[tuple[M | None, str | None]] = [(None, "not run")] * len(base)
    pending = list(range(len(base)))
    attempts = max(1, max_attempts)
    used = [0] * len(base)
    if attempts_out is not None:
        attempts_out[:] = used
    for attempt in range(attempts):
        if not pending:
            break
        for i in pending:
            used[i] = attempt + 1
        if attempts_out is not None:
            attempts_out[:] = used
        if attempt > 0 and backend.budget_exhausted:
            for i in pending:
                out[i] = (None, f"{out[i][1]}; not retried: budget")
            return out
        batch = [_attempt_request(base[i], attempt, retry_temperature) for i in pending]
        label = desc if attempt == 0 else f"{desc} (retry {attempt})"
        results = backend.generate(batch, desc=label)
        retry: list[int] = []
        for i, req, res in zip(pending, batch, results, strict=True):
            value, err = parse_reply(res, req, models[i])
            out[i] = (value, err)
            if value is None and res.ok:
                retry.append(i)
        pending = retry
    for i in pending:
        out[i] = (None, f"{out[i][1]} after {attempts} attempts")
    return out


def with_feedback(req: ChatRequest, reply: str, problem: str) -> ChatRequest:
    """``req`` continued: the model's previous ``reply``, then a user turn stating ``problem``, so
    a retry is asked with the failure said (and has a cache key of its own)."""
    messages = [
        *req.messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": problem},
    ]
    return replace(req, messages=messages)


def _attempt_request(req: ChatRequest, attempt: int, retry_temperature: float | None) -> ChatRequest:
    if attempt == 0:
        return req
    seed = (req.seed if req.seed is not None else 0) + 1000 * attempt
    if retry_temperature is not None and req.temperature == 0.0:
        return replace(req, seed=seed, temperature=retry_temperature)
    return replace(req, seed=seed)
