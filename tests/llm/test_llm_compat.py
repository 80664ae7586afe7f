"""What real OpenAI-compatible servers do that the client must take as it is."""

from __future__ import annotations

import json
from typing import Any

from support.scripted_server import Reply, ScriptedServer

from bailclio.config import Config
from bailclio.llm.base import ChatRequest
from bailclio.llm.openai_backend import OpenAIBackend
from bailclio.llm.structured import generate_structured
from bailclio.llmnaming.prompts import LEAF_TASK
from bailclio.llmnaming.replies import ClusterName, ask
from bailclio.llmnaming.requests import naming_request


def test_a_server_that_wants_max_completion_tokens_gets_it(server: ScriptedServer) -> None:
    def strict(body: dict[str, Any]) -> Reply | str:
        if "max_tokens" in body:
            return Reply(
                status=400,
                error_message="Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
            )
        return f"limit {body['max_completion_tokens']}"

    server.handler = strict
    be = OpenAIBackend("m", base_url=server.base_url, progress=False, max_concurrency=1)
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=33) for i in range(3)]
    assert [r.text for r in be.generate(reqs)] == ["limit 33"] * 3
    assert be.stats()["max_tokens_param"] == "max_completion_tokens"
    assert len(server.requests) == 4  # one refused, then every request with the other name


def test_fenced_replies_with_extra_keys_and_long_descriptions_become_names(server: ScriptedServer) -> None:
    long = " ".join(f"Sentence {i} is about baking bread at home." for i in range(30))
    reply = (
        "Here you go:\n```json\n"
        + json.dumps({"name": "Bake bread at home", "description": long, "confidence": 0.9, "notes": "x"})
        + "\n```"
    )
    server.handler = lambda body: reply
    be = OpenAIBackend("m", base_url=server.base_url, progress=False)
    req = ChatRequest(messages=[{"role": "user", "content": "<members>\n- bread\n</members> name it"}])
    out = ask(be, {0: req}, Config(), "names")
    value, err = out[0].value, out[0].error
    assert err is None and value is not None
    assert value.name == "Bake bread at home"
    assert (
        value.description
        == "Sentence 0 is about baking bread at home. Sentence 1 is about baking bread at home."
    )
    # the request carried the schema as llama.cpp's server takes it
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and sorted(fmt["json_schema"]["schema"]["properties"]) == [
        "description", "name"
    ]  # fmt: skip


def test_a_name_copied_from_the_naming_prompt_is_refused(server: ScriptedServer) -> None:
    server.handler = lambda body: json.dumps(
        {"name": "Write a name for the cluster of conversations", "description": "The members share a topic."}
    )
    be = OpenAIBackend("m", base_url=server.base_url, progress=False)
    req = naming_request(
        LEAF_TASK.format(subject="Each item is a prompt."), ["<members>\n- soup\n</members>"], Config(), "t"
    )
    reply = ask(be, {0: req}, Config(), "names")[0]
    value, err = reply.value, reply.error
    assert value is None and "copied text of the prompt" in (err or "")


def test_a_reply_that_is_not_json_is_a_failure_with_its_reason(server: ScriptedServer) -> None:
    server.handler = lambda body: "I cannot name this."
    be = OpenAIBackend("m", base_url=server.base_url, progress=False)
    req = ChatRequest(messages=[{"role": "user", "content": "x"}])
    ((value, err),) = generate_structured(be, [req], ClusterName, 2)
    assert value is None and "invalid reply" in (err or "") and "after 2 attempts" in (err or "")
