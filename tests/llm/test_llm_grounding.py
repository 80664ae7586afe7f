"""Grounded names: an LLM name must fit its own members better than its nearest siblings' members
(checked with the embedding model); a failing name is asked again once with the failure stated,
then replaced by its keyphrase name, flagged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.llm_stage_model import block_items, prompt_kind
from support.prompts_model import MODEL, cfg_for, restating_model, write_prompts
from support.scripted_server import ScriptedServer

from bailclio.pipeline import run

pytestmark = pytest.mark.timeout(300)
RIGHT = {
    "poem": ("Write rhyming poems about nature", "Users ask for short rhyming poems. Each is about a scene."),
    "code": (
        "Fix KeyError bugs in Python parsers",
        "Users ask to fix a Python KeyError. The code parses data.",
    ),
    "cake": ("Give step-by-step cake recipes", "Users ask for cake recipes. Each has a flavour."),
}
WRONG_FOR_POEMS = ("Give step-by-step cake recipes", "Users ask for cake recipes. Each has a flavour.")


def theme_of_members(body: dict[str, Any]) -> str:
    text = " ".join(block_items(body, "members")).lower()
    return max(
        ("poem", "code", "cake"),
        key=lambda t: text.count({"poem": "poem", "code": "python", "cake": "cake"}[t]),
    )


def namer(fix_on_retry: bool):
    def handler(body: dict[str, Any]) -> str:
        first = {**body, "messages": body["messages"][:2]}  # a retry continues the first request
        if prompt_kind(first) != "leaf":
            return restating_model(body)
        theme = theme_of_members(first)
        retry = "does not fit its own" in body["messages"][-1]["content"]
        name, desc = WRONG_FOR_POEMS if theme == "poem" and not (retry and fix_on_retry) else RIGHT[theme]
        return json.dumps({"name": name, "description": desc})

    return handler


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.csv")


@pytest.fixture()
def server() -> Any:
    with ScriptedServer(handler=restating_model, model=MODEL) as srv:
        yield srv


def poem_leaves(res: Any) -> list[Any]:
    conv = {cid: leaf for cid, leaf in res.assignments.select("conversation_id", "leaf_id").iter_rows()}
    ids = {leaf for cid, leaf in conv.items() if cid.startswith("poem-")}
    return [n for n in res.taxonomy.level(res.taxonomy.depth - 1) if n.id in ids]


def test_a_name_that_fits_other_members_is_retried_then_replaced_and_flagged(
    server: ScriptedServer, prompts: Path, tmp_path: Path
) -> None:
    server.handler = namer(fix_on_retry=False)
    res = run(prompts, tmp_path / "run", cfg_for(server, tmp_path / "c.sqlite"), progress=False)
    poems = [n for n in poem_leaves(res) if not n.extra.get("is_outlier_node")]
    assert poems
    for node in poems:
        assert node.extra["name_source"] == "keyphrases"
        assert node.extra["name_error"].startswith('ungrounded: "Give step-by-step cake recipes"')
        assert "after one retry" in node.extra["name_error"]
        assert node.extra["grounded_first"] is False and node.extra["grounding_retried"] is True
        assert "grounding_margin" in node.extra
    retries = [
        b
        for b in server.requests
        if "does not fit its own" in b["messages"][-1]["content"]
        and "<members>" in b["messages"][1]["content"]
    ]
    cfg = cfg_for(server, tmp_path / "c.sqlite")
    assert len(retries) == len(poems) * cfg.naming.grounding_retry_samples
    body = retries[0]["messages"]
    assert body[-2]["role"] == "assistant" and "Give step-by-step cake recipes" in body[-2]["content"]
    assert "margin" in body[-1]["content"]
    grounding = res.manifest["llm"]["grounding"]
    assert res.manifest["llm"]["stages"]["names_leaf"]["replaced_ungrounded"] == len(poems)
    assert (
        grounding["grounded_share"] < 1.0
        and res.taxonomy.meta["grounded_share"] == grounding["grounded_share"]
    )
    others = [
        n
        for n in res.taxonomy.level(res.taxonomy.depth - 1)
        if n not in poems and n.extra["name_source"] == "llm"
    ]
    assert others and all(n.extra["grounded"] and n.extra["grounding_margin"] > 0 for n in others)
    assert any("did not fit their members" in w for w in res.manifest["llm"]["warnings"])


def test_a_name_fixed_on_the_retry_is_kept(server: ScriptedServer, prompts: Path, tmp_path: Path) -> None:
    server.handler = namer(fix_on_retry=True)
    res = run(prompts, tmp_path / "run", cfg_for(server, tmp_path / "c.sqlite"), progress=False)
    poems = [n for n in poem_leaves(res) if not n.extra.get("is_outlier_node")]
    assert poems
    for node in poems:
        assert node.extra["name_source"] == "llm" and node.name.startswith(RIGHT["poem"][0])
        assert node.extra["grounded_first"] is False and node.extra["grounding_retried"] is True
        assert node.extra["grounded"] is True
    assert res.manifest["llm"]["stages"]["names_leaf"]["replaced_ungrounded"] == 0


def test_a_grounding_retry_may_keep_words_of_its_own_first_answer() -> None:
    from bailclio.llm.base import ChatRequest
    from bailclio.llm.structured import with_feedback
    from bailclio.llmnaming.prompts import GROUNDING_FEEDBACK
    from bailclio.llmnaming.replies import instructions_of

    req = ChatRequest(
        messages=[
            {"role": "system", "content": "Name clusters of conversations."},
            {"role": "user", "content": "Name this cluster.\n<members>\n- a poem\n</members>"},
        ]
    )
    first = "Write rhyming poems about the seaside at dusk"
    msg = GROUNDING_FEEDBACK.format(name=first, what="members", others="nearby items", why="margin -0.1")
    retry = with_feedback(req, json.dumps({"name": first, "description": "Poems."}), msg)
    own_words = instructions_of(retry)
    assert first.lower() not in own_words.lower()
    assert "Name this cluster." in own_words and "a poem" not in own_words
    assert instructions_of(req) == own_words


def test_a_name_of_generic_words_only_is_asked_again(
    server: ScriptedServer, prompts: Path, tmp_path: Path
) -> None:
    right = namer(fix_on_retry=True)

    def handler(body: dict[str, Any]) -> str:
        first = {**body, "messages": body["messages"][:2]}
        if prompt_kind(first) == "leaf" and (body.get("seed") or 0) < 1000:  # the first attempt
            return json.dumps(
                {"description": "Users ask for help. They want answers.", "name": "Assist users"}
            )
        return right(body)

    server.handler = handler
    res = run(prompts, tmp_path / "run", cfg_for(server, tmp_path / "c.sqlite"), progress=False)
    leaves = [n for n in res.taxonomy.level(res.taxonomy.depth - 1) if not n.extra.get("is_outlier_node")]
    assert leaves and all(n.extra["name_source"] == "llm" for n in leaves)
    assert not any(n.name.startswith("Assist users") for n in leaves)
    stage = res.manifest["llm"]["stages"]["names_leaf"]
    assert stage["first_attempt_valid"] == 0
