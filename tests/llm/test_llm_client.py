"""The openai back-end against the scripted server over a real 127.0.0.1 socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from support.scripted_server import Reply, ScriptedServer, last_user_message

from bailclio.config import LLMConfig
from bailclio.errors import UserError
from bailclio.llm import make_backend
from bailclio.llm.base import ChatRequest
from bailclio.llm.cache import LLMCache
from bailclio.llm.openai_backend import OpenAIBackend
from bailclio.llm.openai_wire import retry_after_s

pytestmark = pytest.mark.timeout(60)


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


def backend(srv: ScriptedServer, cache: Path | None = None, **kw: object) -> OpenAIBackend:
    kw.setdefault("backoff_base_s", 0.01)
    return OpenAIBackend("scripted-model", base_url=srv.base_url, cache=cache, progress=False, **kw)  # type: ignore[arg-type]


def test_transient_failures_are_retried_until_success(server: ScriptedServer) -> None:
    server.push(
        Reply(status=429, retry_after=0.3),
        Reply(status=500),
        Reply(status=503),
        Reply(drop=True),
        Reply(truncate=True),
        Reply(delay_ms=1000),  # longer than the client timeout
        Reply(raw_body='{"choices": ['),
    )
    be = backend(server, max_retries=8, timeout_s=0.5)
    t0 = time.perf_counter()
    (res,) = be.generate([ask("hello")])
    elapsed = time.perf_counter() - t0
    assert res.ok, res.error
    assert res.text == "echo: hello"
    assert len(server.requests) == 8
    assert be.stats()["retries"] == 7
    assert be.stats()["calls"] == 8
    assert elapsed >= 0.3 + 0.5  # waited out Retry-After and the timeout


def test_item_fails_after_max_retries_and_others_complete(server: ScriptedServer) -> None:
    server.handler = lambda body: Reply(status=500) if last_user_message(body) == "bad" else None
    be = backend(server, max_retries=2, max_concurrency=1)
    res = be.generate([ask("a"), ask("bad"), ask("b")])
    assert [r.ok for r in res] == [True, False, True]
    assert res[1].error == "http 500 after 3 attempts"
    assert sum(last_user_message(b) == "bad" for b in server.requests) == 3
    assert be.stats()["failures"] == 1


def test_client_errors_are_not_retried(server: ScriptedServer) -> None:
    server.push(Reply(status=404, error_message="model not found"))
    (res,) = backend(server).generate([ask("x")])
    assert res.error is not None and res.error.startswith("http 404")
    assert "model not found" in res.error
    assert len(server.requests) == 1


def test_concurrency_is_bounded_and_reached(server: ScriptedServer) -> None:
    server.latency_ms = 50
    be = backend(server, max_concurrency=8)
    res = be.generate([ask(f"q{i}") for i in range(48)])
    assert all(r.ok for r in res)
    assert [r.text for r in res] == [f"echo: q{i}" for i in range(48)]
    assert server.max_in_flight == 8


def test_call_budget_stops_cleanly_and_keeps_partial_results(server: ScriptedServer, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    be = backend(server, cache=cache, max_calls=5, max_concurrency=1)
    reqs = [ask(f"q{i}") for i in range(12)]
    res = be.generate(reqs)
    assert [r.ok for r in res] == [True] * 5 + [False] * 7
    assert {r.error for r in res[5:]} == {"budget"}
    assert be.budget_exhausted
    assert be.stats()["budget_skipped"] == 7
    be.close()
    assert len(LLMCache(cache)) == 5
    server.reset()
    again = backend(server, cache=cache).generate(reqs)
    assert all(r.ok for r in again)
    assert len(server.requests) == 7  # only the ones the budget stopped


def test_token_budget_stops_cleanly(server: ScriptedServer) -> None:
    server.handler = lambda body: Reply(text="ok", prompt_tokens=10, completion_tokens=0)
    be = backend(server, max_total_tokens=35, max_concurrency=1)
    res = be.generate([ask(f"q{i}") for i in range(10)])
    assert sum(r.ok for r in res) == 4  # 40 tokens >= 35 after the 4th call
    assert all(r.error == "budget" for r in res[4:])


def test_rerun_with_same_inputs_makes_no_calls_but_failures_are_retried(
    server: ScriptedServer, tmp_path: Path
) -> None:
    cache = tmp_path / "c.sqlite"
    server.handler = lambda body: Reply(status=500) if last_user_message(body) == "q3" else None
    reqs = [ask(f"q{i}", tag=f"t{i}") for i in range(6)]
    first = backend(server, cache=cache, max_retries=0).generate(reqs)
    assert [r.ok for r in first] == [True, True, True, False, True, True]
    server.reset()
    server.handler = None
    be = backend(server, cache=cache)
    second = be.generate(reqs)
    assert [last_user_message(b) for b in server.requests] == ["q3"]
    assert all(r.ok for r in second)
    assert [r.cached for r in second] == [True, True, True, False, True, True]
    assert [r.tag for r in second] == [f"t{i}" for i in range(6)]
    assert [r.text for r in second] == [f"echo: q{i}" for i in range(6)]
    server.reset()
    third = be.generate(reqs)
    assert server.requests == []
    assert [r.text for r in third] == [r.text for r in second]
    assert be.stats()["cache_hits"] == 5 + 6


def test_identical_requests_in_one_batch_are_called_once(server: ScriptedServer) -> None:
    res = backend(server).generate([ask("same", tag="a"), ask("same", tag="b")])
    assert len(server.requests) == 1
    assert [r.tag for r in res] == ["a", "b"]
    assert res[0].text == res[1].text == "echo: same"


_CHILD = textwrap.dedent(
    """
    import sys
    from bailclio.llm.base import ChatRequest
    from bailclio.llm.openai_backend import OpenAIBackend

    base_url, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    be = OpenAIBackend("scripted-model", base_url=base_url, cache=cache, max_concurrency=2,
                       progress=False)
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    be.generate(reqs)
    """
)


def test_killed_run_resumes_without_repeating_completed_calls(server: ScriptedServer, tmp_path: Path) -> None:
    n = 40
    server.latency_ms = 40
    cache = tmp_path / "c.sqlite"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), server.base_url, str(cache), str(n)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(server.requests) < 12 and time.monotonic() < deadline:
            assert child.poll() is None, "child finished before it could be killed"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    done = len(LLMCache(cache))
    assert 8 <= done < n
    server.reset()
    reqs = [ask(f"q{i}") for i in range(n)]
    resumed = backend(server, cache=cache, max_concurrency=4).generate(reqs)
    assert len(server.requests) == n - done
    reference = backend(server, cache=None).generate(reqs)
    assert [r.text for r in resumed] == [r.text for r in reference]
    assert [r.text for r in resumed] == [f"echo: q{i}" for i in range(n)]


def test_logprobs_and_tool_calls_are_parsed(server: ScriptedServer) -> None:
    server.push(
        Reply(logprobs=[[("Yes", -0.1), ("No", -2.5), ("Maybe", -4.0)], [(".", -0.01)]]),
        Reply(tool_calls=[{"name": "end_conversation", "arguments": {"reason": "abuse"}}]),
    )
    be = backend(server, max_concurrency=1)
    tools = [
        {
            "type": "function",
            "function": {"name": "end_conversation", "parameters": {"type": "object"}},
        }
    ]
    lp, tc = be.generate([ask("yes or no?", top_logprobs=2), ask("hi", tools=tools)])
    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 2
    choice = lp.choices[0]
    assert choice.text == "Yes."
    assert choice.tokens == ["Yes", "."]
    assert choice.token_logprobs == [-0.1, -0.01]
    assert choice.top_logprobs == [{"Yes": -0.1, "No": -2.5}, {".": -0.01}]
    assert server.requests[1]["tools"] == tools
    assert tc.choices[0].finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in tc.choices[0].tool_calls] == [
        ("end_conversation", {"reason": "abuse"})
    ]


def test_alternatives_shown_with_the_same_text_are_combined(server: ScriptedServer) -> None:
    import math

    # vLLM shows both diverging byte pieces of two emoji as "": they are different tokens
    server.push(Reply(logprobs=[[("", math.log(0.5)), ("", math.log(0.3)), ("a", math.log(0.1))]]))
    res = backend(server, max_concurrency=1).generate([ask("pick", top_logprobs=3)])[0]
    alts = res.choices[0].top_logprobs[0]
    assert set(alts) == {"", "a"}
    assert alts[""] == pytest.approx(math.log(0.8))
    assert alts["a"] == pytest.approx(math.log(0.1))


def test_prompt_logprobs_are_sent_and_parsed_and_cached(server: ScriptedServer, tmp_path: Path) -> None:
    server.push(Reply(text="x", prompt_logprobs={" there": -2.5}))
    be = backend(server, max_concurrency=1, cache=tmp_path / "c.sqlite")
    req = ask("hi there", prompt_logprobs=0)
    res = be.generate([req])[0]
    assert server.requests[0]["prompt_logprobs"] == 0
    assert res.prompt_logprobs[0] is None and len(res.prompt_logprobs) >= 3
    assert all(len(e) == 1 for e in res.prompt_logprobs[1:])
    assert list(res.prompt_logprobs[2].values()) == [-2.5]  # "user:", " hi", " there", ...
    again = be.generate([req])[0]
    assert again.cached and again.prompt_logprobs == res.prompt_logprobs
    plain = be.generate([ask("hi there")])[0]
    assert plain.prompt_logprobs is None and "prompt_logprobs" not in server.requests[-1]


def test_n_choices_are_returned(server: ScriptedServer) -> None:
    server.push(Reply(text=["a", "b", "c"]))
    (res,) = backend(server).generate([ask("x", n=3, temperature=1.0, seed=7)])
    assert server.requests[0]["n"] == 3 and server.requests[0]["seed"] == 7
    assert [c.text for c in res.choices] == ["a", "b", "c"]


def test_prefill_is_sent_as_continue_final_message(server: ScriptedServer) -> None:
    (res,) = backend(server).generate([ask("go on", prefill="Sure, here")])
    body = server.requests[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "Sure, here"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert res.ok


def test_structured_request_carries_the_schema(server: ScriptedServer) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    (res,) = backend(server).generate([ask("label it", json_schema=schema, schema_name="Label")])
    fmt = server.requests[0]["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "Label", "schema": schema}}
    assert json.loads(res.text) == {"label": "x"}


def test_server_without_json_schema_falls_back_to_json_object_then_prompt() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    seen: list[str | None] = []

    def handler(body: dict) -> Reply | None:
        fmt = (body.get("response_format") or {}).get("type")
        seen.append(fmt)
        return Reply(status=400) if fmt == "json_object" else Reply(text='{"n": 1}')

    with ScriptedServer(handler, supports_json_schema=False) as srv:
        be = backend(srv)
        (res,) = be.generate([ask("count", json_schema=schema)])
        assert res.ok and res.text == '{"n": 1}'
        assert be.stats()["json_mode"] == "prompt"
        # json_schema is refused by the server itself, before the handler sees it.
        assert [b.get("response_format", {}).get("type") for b in srv.requests] == [
            "json_schema",
            "json_object",
            None,
        ]
        assert seen == ["json_object", None]
        system = srv.requests[-1]["messages"][0]
        assert system["role"] == "system" and json.dumps(schema) in system["content"]


def test_models_endpoint_lists_the_model(server: ScriptedServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
    assert [m.id for m in client.models.list()] == ["scripted-model"]


def test_make_backend_follows_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_backend(LLMConfig(), tmp_path / "c.sqlite") is None
    with pytest.raises(UserError, match="llm.model"):
        make_backend(LLMConfig(backend="openai"), tmp_path / "c.sqlite")
    monkeypatch.setenv("MY_KEY", "secret")
    cfg = LLMConfig(
        backend="openai",
        model="m",
        base_url="http://127.0.0.1:1/v1",
        api_key_env="MY_KEY",
        max_concurrency=3,
        max_calls=9,
        structured_output=False,
        max_tokens=77,
    )
    be = make_backend(cfg, tmp_path / "c.sqlite")
    assert isinstance(be, OpenAIBackend)
    assert (be.transport.api_key, be.transport.max_concurrency, be.max_calls, be.transport.json_mode) == (
        "secret",
        3,
        9,
        "prompt",
    )
    assert be.make_request([{"role": "user", "content": "x"}]).max_tokens == 77
    assert (tmp_path / "c.sqlite").exists()
    be.close()
    monkeypatch.delenv("MY_KEY")
    assert make_backend(cfg, tmp_path / "d.sqlite").transport.api_key == "EMPTY"  # type: ignore[union-attr]


def test_max_concurrency_64_keeps_64_requests_in_flight(server: ScriptedServer) -> None:
    # each answer takes long enough that a loaded machine still opens all 64 before one returns
    server.latency_ms = 1000
    be = backend(server, max_concurrency=64)
    res = be.generate([ask(f"c{i}") for i in range(128)])
    assert all(r.ok for r in res)
    # 64 requests were open at once, never more (throughput is measured by bench/llm_throughput.py)
    assert server.max_in_flight == 64


def test_generate_works_inside_a_running_event_loop(server: ScriptedServer) -> None:
    import asyncio

    async def caller() -> list[str]:
        return [r.text for r in backend(server).generate([ask("from a loop")])]

    assert asyncio.run(caller()) == ["echo: from a loop"]


def test_retry_after_forms_are_understood() -> None:
    assert retry_after_s({"retry-after": "2.5"}) == 2.5
    assert retry_after_s({"retry-after-ms": "300", "retry-after": "9"}) == 0.3
    in_5s = retry_after_s({"retry-after": formatdate(time.time() + 5, usegmt=True)})
    assert in_5s is not None and 3 < in_5s <= 5
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
