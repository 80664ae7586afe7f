"""Structured replies validated with pydantic, against the scripted server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from support.scripted_server import Reply, ScriptedServer, last_user_message

from bailclio.llm.base import ChatRequest
from bailclio.llm.openai_backend import OpenAIBackend
from bailclio.llm.structured import extract_json, generate_structured

pytestmark = pytest.mark.timeout(60)


class Facet(BaseModel):
    summary: str = Field(min_length=1)
    harm: int = Field(ge=0, le=5)


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


def backend(srv: ScriptedServer, cache: Path | None = None) -> OpenAIBackend:
    return OpenAIBackend(
        "scripted-model", base_url=srv.base_url, cache=cache, progress=False, backoff_base_s=0.01
    )


def _handler(body: dict) -> Reply:
    prompt = last_user_message(body)
    if prompt == "good":
        return Reply(text='{"summary": "asks for help", "harm": 0}')
    if prompt == "flaky":  # truncated on the first attempt, fine when asked again
        if body.get("seed") is None:
            return Reply(text='{"summary": "partial', finish_reason="length")
        return Reply(text='```json\n{"summary": "second try", "harm": 2}\n```')
    if prompt == "out-of-range":
        return Reply(text='{"summary": "x", "harm": 9}')
    return Reply(text="I cannot answer in JSON.")


def test_invalid_replies_are_retried_then_recorded_as_failures(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.handler = _handler
    reqs = [ask(p) for p in ("good", "flaky", "prose", "out-of-range")]
    out = generate_structured(backend(server, tmp_path / "c.sqlite"), reqs, Facet, max_attempts=3)
    assert out[0] == (Facet(summary="asks for help", harm=0), None)
    assert out[1] == (Facet(summary="second try", harm=2), None)
    assert out[2][0] is None and out[2][1] is not None
    assert out[2][1].startswith("invalid reply") and out[2][1].endswith("after 3 attempts")
    assert out[3][0] is None and "harm" in str(out[3][1])
    by_prompt: dict[str, list[dict]] = {}
    for body in server.requests:
        by_prompt.setdefault(last_user_message(body), []).append(body)
    assert {p: len(v) for p, v in by_prompt.items()} == {
        "good": 1,
        "flaky": 2,
        "prose": 3,
        "out-of-range": 3,
    }
    # Each attempt is a distinct call (new seed), not served from the cache.
    assert len({b.get("seed") for b in by_prompt["prose"]}) == 3
    assert all(b["temperature"] > 0 for b in by_prompt["prose"][1:])


def test_rerun_is_served_from_cache(server: ScriptedServer, tmp_path: Path) -> None:
    server.handler = _handler
    reqs = [ask("good"), ask("flaky")]
    first = generate_structured(backend(server, tmp_path / "c.sqlite"), reqs, Facet)
    server.reset()
    second = generate_structured(backend(server, tmp_path / "c.sqlite"), reqs, Facet)
    assert second == first
    assert server.requests == []


def test_requests_carry_the_models_schema(server: ScriptedServer) -> None:
    server.handler = _handler
    generate_structured(backend(server), [ask("good")], Facet)
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Facet"
    assert fmt["json_schema"]["schema"] == Facet.model_json_schema()


def test_prefill_is_part_of_the_parsed_reply(server: ScriptedServer) -> None:
    server.push(Reply(text='"refusal", "harm": 1}'))
    out = generate_structured(backend(server), [ask("x", prefill='{"summary": ')], Facet)
    assert out == [(Facet(summary="refusal", harm=1), None)]


def test_transport_failures_are_not_turned_into_values(server: ScriptedServer) -> None:
    server.handler = lambda body: Reply(status=400, error_message="context too long")
    be = OpenAIBackend("scripted-model", base_url=server.base_url, progress=False, structured_output=False)
    ((value, err),) = generate_structured(be, [ask("x")], Facet)
    assert value is None
    assert err is not None and "context too long" in err
    assert len(server.requests) == 1


def test_extract_json_finds_the_object() -> None:
    assert json.loads(extract_json('Sure! {"a": 1} hope it helps')) == {"a": 1}
    assert json.loads(extract_json('```json\n{"a": 2}\n```')) == {"a": 2}
    assert extract_json("no json here") == "no json here"
