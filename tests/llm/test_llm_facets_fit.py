"""Facets that fit the input, cleaned answers and collapse detection, against a scripted
OpenAI-compatible server that writes the way small real models do (restated questions, copied
instructions, over-long answers, one answer for everything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.llm_stage_model import prompt_kind
from support.prompts_model import (
    MODEL,
    PREFILL,
    REQUEST,
    TARGETS,
    cfg_for,
    one_answer_model,
    restating_model,
    write_prompts,
)
from support.scripted_server import ScriptedServer

from bailclio.cli import main as cli_main
from bailclio.config import Config
from bailclio.llm.openai_backend import OpenAIBackend
from bailclio.llmnaming.facet_extract import extract_facets
from bailclio.pipeline import run

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.csv")


@pytest.fixture()
def server() -> Any:
    with ScriptedServer(handler=restating_model, model=MODEL) as srv:
        yield srv


def test_single_prompts_are_asked_their_request_not_why_the_assistant_left(
    server: ScriptedServer, prompts: Path, tmp_path: Path
) -> None:
    res = run(prompts, tmp_path / "run", cfg_for(server, tmp_path / "c.sqlite"), progress=False)
    facet_bodies = [b for b in server.requests if prompt_kind(b) == "facets"]
    assert len(facet_bodies) == 24
    for body in facet_bodies:
        schema = body["response_format"]["json_schema"]["schema"]
        assert sorted(schema["properties"]) == ["concern", "language", "request"]
        assert "bail_reason" not in body["messages"][-1]["content"]
        assert "description" not in json.dumps(schema)  # nothing descriptive to copy
    llm = res.manifest["llm"]
    assert llm["facet"] == "request" and llm["clustering"]["facet_chosen_by"] == "input"
    assert llm["clustering"]["row_kinds"] == {"prompt": 24}
    assert llm["clustering"]["clustered_on"] == "facet"
    per = llm["stages"]["facets"]["per_facet"]
    assert per["bail_reason"]["asked_rows"] == 0 and per["bail_reason"]["not_applicable_rows"] == 24
    conv = pl.read_parquet(res.path / "conversations.parquet")
    assert conv["facet_bail_reason"].null_count() == 24
    # the restated question is stripped before the answer is stored (and embedded)
    for cid, answer in conv.select("conversation_id", "facet_request").iter_rows():
        theme, j = cid.split("-")
        assert answer == REQUEST[theme].format(t=TARGETS[int(j)]) + "."
    assert per["request"]["quality"]["degenerate"] is False
    assert res.taxonomy.meta["clustered_on"] == "facet"


def test_an_explicit_facet_that_fits_no_row_is_not_clustered_and_the_run_says_so(
    server: ScriptedServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = cli_main(
        ["run", str(prompts), "--out", str(out), "--quiet", "--llm", "openai", "--base-url", server.base_url,
         "--model", MODEL, "--llm-cache", str(tmp_path / "c.sqlite"), "--facet", "bail_reason",
         "--min-cluster-size", "4"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, [
        (n["id"], n.get("name_source"), n.get("name_error"))
        for n in json.loads((out / "taxonomy.json").read_text())["nodes"]
        if n.get("name_source") != "llm"
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    clustering = manifest["llm"]["clustering"]
    assert clustering["facet"] == "bail_reason" and clustering["facet_chosen_by"] == "config"
    assert clustering["clustered_on"] == "text" and clustering["text_rows"] == 24
    assert "applies to none of the rows" in clustering["reason"]
    assert "clustered on the rendered text" in printed.out
    assert "warning: clustering on their rendered text" in printed.out
    assert all("bail_reason" not in b["messages"][-1]["content"] for b in server.requests)


def test_a_collapsed_facet_is_reported_and_the_run_clusters_on_the_text(
    server: ScriptedServer, prompts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.handler = one_answer_model
    res = run(prompts, tmp_path / "run", cfg_for(server, tmp_path / "c.sqlite"), progress=False)
    err = caplog.text  # the library logs its warnings; the CLI prints them on stderr
    llm = res.manifest["llm"]
    quality = llm["stages"]["facets"]["per_facet"]["request"]["quality"]
    assert quality["degenerate"] is True and quality["top_share"] == 1.0 and quality["distinct"] == 1
    assert llm["clustering"]["clustered_on"] == "text" and llm["clustering"]["text_rows"] == 24
    assert "collapsed" in llm["clustering"]["reason"] and llm["warnings"]
    assert "collapsed" in err
    assert res.taxonomy.meta["clustered_on"] == "text"
    # the namer sees what was clustered: the conversations, not the one answer
    leaf_bodies = [b for b in server.requests if prompt_kind(b) == "leaf"]
    assert leaf_bodies and all(
        "get help with something" not in b["messages"][-1]["content"] for b in leaf_bodies
    )


def test_the_answers_can_be_clustered_anyway_when_asked(
    server: ScriptedServer, prompts: Path, tmp_path: Path
) -> None:
    server.handler = one_answer_model
    cfg = cfg_for(server, tmp_path / "c.sqlite", llm__degenerate_fallback="facet")
    res = run(prompts, tmp_path / "run", cfg, progress=False)
    assert res.manifest["llm"]["clustering"]["clustered_on"] == "facet"
    assert res.manifest["counts"]["unique_texts"] == 1


def extract(server: ScriptedServer, texts: list[str]) -> Any:
    backend = OpenAIBackend(MODEL, base_url=server.base_url, progress=False)
    return extract_facets(
        backend, Config().facets, texts, [None] * len(texts), [{}] * len(texts),
        conversation_chars=2000, max_tokens=200, temperature=0.0, max_attempts=2,
    )  # fmt: skip


def test_an_answer_copied_from_the_instructions_is_asked_again_with_the_problem_stated(
    server: ScriptedServer,
) -> None:
    copied = "Questions about the conversation given below"

    def copier(body: dict[str, Any]) -> str:
        if "not usable" in body["messages"][-1]["content"]:
            return json.dumps({"request": "plan a birthday party", "language": "English", "concern": 1})
        return json.dumps({"request": copied, "language": "English", "concern": 1})

    server.handler = copier
    res = extract(server, ["Help me plan a birthday party for my son"])
    assert res.values[0]["request"] == "plan a birthday party"
    assert len(server.requests) == 2
    retry = server.requests[1]["messages"]
    first = json.dumps({"request": copied, "language": "English", "concern": 1}, separators=(",", ":"))
    assert retry[-2] == {"role": "assistant", "content": first}
    assert '"request" copied text of the prompt' in retry[-1]["content"]
    assert res.stats["feedback_retries"] == 1


def test_an_answer_that_keeps_copying_is_left_empty_not_stored(server: ScriptedServer) -> None:
    server.handler = lambda body: json.dumps(
        {"request": f"{PREFILL} ...", "language": "Answer in one short sentence.",
         "concern": 2}
    )  # fmt: skip
    res = extract(server, ["Tell me a joke about cats"])
    assert res.values[0] == {"request": None, "bail_reason": None, "language": None, "concern": 2}
    assert res.issues[0] == {"request": "only restated the question", "language": "copied text of the prompt"}
    assert res.errors[0] is None


def test_an_over_long_answer_is_cut_at_a_sentence_boundary(server: ScriptedServer) -> None:
    long = " ".join(f"Sentence number {i} says something about the sea and its waves." for i in range(12))
    server.handler = lambda body: json.dumps({"request": long, "language": "English", "concern": 1})
    res = extract(server, ["Write about the sea"])
    answer = res.values[0]["request"]
    assert 150 <= len(answer) <= 300 and answer.endswith("waves.") and long.startswith(answer)
    assert res.stats["trimmed"] == 1
