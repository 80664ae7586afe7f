"""Names-only mode: the LLM names the nodes from the rows' own texts and asks nothing of the rows.
Against the scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.llm_stage_model import THEMES, analyst, block_items, make_rows, prompt_kind, write_rows
from support.scripted_server import ScriptedServer

from bailclio.cli import build_parser
from bailclio.commands.run import config_from_args
from bailclio.config import Config, load_config
from bailclio.errors import UserError
from bailclio.llm import make_backend
from bailclio.llmnaming.delimiters import escape_delimiters
from bailclio.llmnaming.stage import LLMStage
from bailclio.pipeline import RunResult, run

pytestmark = pytest.mark.timeout(300)
MODEL = "scripted-model"


def names_only_config(srv: ScriptedServer, cache: Path, **over: Any) -> Config:
    return load_config(
        None,
        {
            "llm.backend": "openai",
            "llm.base_url": srv.base_url,
            "llm.model": MODEL,
            "llm.cache_path": str(cache),
            "llm.max_retries": 1,
            "llm.names_only": True,
            **over,
        },
    )


def names_analyst(body: dict[str, Any]) -> Any:
    """The honest analyst; asked again after a failed check, it repeats its answer."""
    if prompt_kind(body) == "other":
        return next(str(m["content"]) for m in reversed(body["messages"]) if m["role"] == "assistant")
    return analyst(body)


@dataclass
class Done:
    result: RunResult
    requests: list[dict[str, Any]]
    rerun_requests: int


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Done]:
    tmp = tmp_path_factory.mktemp("names-only")
    rows = write_rows(tmp / "bails.jsonl", make_rows())  # one row carries an injection attempt
    with ScriptedServer(handler=names_analyst, model=MODEL) as srv:
        cfg = names_only_config(srv, tmp / "cache.sqlite")
        result = run(rows, tmp / "run", cfg, force=True, progress=False)
        requests = list(srv.requests)
        run(rows, tmp / "again", cfg, force=True, progress=False)
        yield Done(result, requests, len(srv.requests) - len(requests))


def test_no_facet_call_is_made_and_calls_stay_within_three_per_node(done: Done) -> None:
    kinds = [prompt_kind(b) for b in done.requests]
    assert "facets" not in kinds and kinds
    nodes = done.result.taxonomy.nodes
    assert len(done.requests) <= 3 * len(nodes)
    llm = done.result.manifest["llm"]
    assert llm["names_only"] is True and llm["stages"]["facets"]["requests"] == 0
    assert llm["total"]["calls"] == len(done.requests)
    assert done.rerun_requests == 0  # a rerun is served from the cache


def test_the_mode_is_recorded_and_rows_are_clustered_on_their_text(done: Done) -> None:
    manifest = done.result.manifest
    assert manifest["config"]["llm"]["names_only"] is True
    assert manifest["llm"]["clustering"]["clustered_on"] == "text"
    assert manifest["llm"]["facets"] == []
    conv = pl.read_parquet(done.result.path / "conversations.parquet")
    assert not [c for c in conv.columns if c.startswith("facet_")]


def test_the_namer_reads_the_rows_texts_escaped(done: Done) -> None:
    conv = pl.read_parquet(done.result.path / "conversations.parquet")
    texts = [escape_delimiters(" ".join(t.split())) for t in conv["text"].to_list()]
    leaf_prompts = [b for b in done.requests if prompt_kind(b) == "leaf"]
    assert leaf_prompts
    for body in leaf_prompts:
        members = block_items(body, "members")
        assert members
        for item in members:  # a row's text as it is, or its beginning when cut
            stem = item[:-3] if item.endswith("...") else item
            assert any(t.startswith(stem) for t in texts), item
        user = body["messages"][-1]["content"]
        assert user.count("</members>") == 1 and "Each item is one conversation" in user
    # the injected closing tag reached the prompt neutralised
    injected = [b for b in leaf_prompts if "PWNED" in b["messages"][-1]["content"]]
    assert injected and all("</conversation>" not in b["messages"][-1]["content"] for b in injected)


def test_names_come_from_the_replies(done: Done) -> None:
    tax = done.result.taxonomy
    leaves = [n for n in tax.level(tax.depth - 1) if n.extra.get("name_source") == "llm"]
    assert leaves
    themes = {f"Handle {t} requests" for t in THEMES} | {"Handle unknown requests"}
    assert all(n.name.split(" (")[0] in themes for n in leaves)


def test_the_command_line_flag_sets_the_mode() -> None:
    args = build_parser().parse_args(
        ["run", "rows.csv", "--llm", "openai", "--base-url", "http://127.0.0.1:1/v1", "--llm-names-only"]
    )
    assert config_from_args(args).llm.names_only is True
    args = build_parser().parse_args(["run", "rows.csv"])
    assert config_from_args(args).llm.names_only is False


def test_names_only_with_the_llm_built_hierarchy_is_a_config_error(tmp_path: Path) -> None:
    with ScriptedServer(handler=analyst, model=MODEL) as srv:
        cfg = names_only_config(srv, tmp_path / "c.sqlite", **{"naming.hierarchy": "llm"})
        backend = make_backend(cfg.llm, None, progress=False)
        try:
            with pytest.raises(UserError, match="names_only"):
                LLMStage(cfg, progress=False, backend=backend)
        finally:
            backend.close()
