"""The OpenAI chat-completions wire format: a :class:`ChatRequest` as the client's keyword
arguments, a completion as a :class:`ChatResult`, and the server's answers read (error messages,
``Retry-After``, the token-limit parameter a server asks for).

    >>> req = ChatRequest(messages=[{"role": "user", "content": "hi"}], prefill="Sure")
    >>> kw = request_kwargs(req, "m", "json_schema", "max_tokens")
    >>> kw["messages"][-1]
    {'role': 'assistant', 'content': 'Sure'}
    >>> kw["extra_body"]
    {'continue_final_message': True, 'add_generation_prompt': False}
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

from bailclio.llm.base import ChatRequest, ChatResult, Choice, ToolCall, merge_logprobs

JSON_MODES = ("json_schema", "json_object", "prompt")


def retry_after_s(headers: Any) -> float | None:
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


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Reply with only a JSON object (no prose, no code fences) that conforms to this JSON "
        f"schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{instruction}"
    else:
        msgs.insert(0, {"role": "system", "content": instruction})
    return msgs


def request_kwargs(req: ChatRequest, model: str, json_mode: str, tokens_param: str) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``req``: the schema sent as
    ``response_format`` or stated in the prompt (``json_mode``), prefill and prompt logprobs as
    vLLM's extra body fields."""
    messages = [dict(m) for m in req.messages]
    kw: dict[str, Any] = {
        "model": model,
        tokens_param: req.max_tokens,
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
            messages = with_instruction(messages, schema_instruction(req.json_schema))
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


def parse_response(resp: Any) -> ChatResult:
    """A chat completion (the openai client's object) as a :class:`ChatResult`."""
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
                alts = merge_logprobs((t.token, float(t.logprob)) for t in entry.top_logprobs or [])
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


def other_tokens_param(message: str, current: str) -> str | None:
    """The other name of the token limit when a 400's ``message`` says the one sent
    (``current``) is not supported and names the other."""
    text = message.lower()
    other = "max_completion_tokens" if current == "max_tokens" else "max_tokens"
    return other if current in text and other in text else None


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


def short_error(exc: Exception, limit: int = 200) -> str:
    body = getattr(exc, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
    text = str(msg or exc).replace("\n", " ")
    return text[:limit]
