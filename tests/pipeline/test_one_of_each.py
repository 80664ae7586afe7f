"""One answer to one question: `diff` and the explorer's Compare match nodes alike; the commands
share one spelling of the LLM, progress and output options."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.explorer_runs import copy_run

from bailclio.cli import build_parser
from bailclio.explorer import compare as C
from bailclio.rundir import load_run
from bailclio.taxonomy.curation import merge_nodes
from bailclio.taxonomy.diff import diff_runs, diff_sides, load_side


def test_diff_and_the_explorer_compare_report_the_same_matches(small_run: Path, tmp_path: Path) -> None:
    other = copy_run(small_run, tmp_path / "other")
    run = load_run(other)
    leaf_level = run.taxonomy.depth - 1
    parent = next(p for p in run.taxonomy.nodes if len(run.taxonomy.children(p.id)) >= 2)
    kids = run.taxonomy.children(parent.id)
    merge_nodes(run, kids[1].id, kids[0].id)
    for level in (0, leaf_level):
        by_diff = diff_sides(load_side(small_run, level), load_side(other, level), level)
        pairs_diff = {(m["a_id"], m["b_id"]) for m in by_diff["matched"]}
        result = diff_runs(load_run(small_run), load_run(other), level)  # what the Compare view calls
        pairs = C.pair_table(result)
        pairs_explorer = set(zip(pairs["A id"].to_list(), pairs["B id"].to_list(), strict=True))
        assert pairs_explorer == pairs_diff, level
        only_a = {x["id"] for x in by_diff["only_in_a"]}
        assert set(C.unmatched_table(result.only_in_a)["id"].to_list()) == only_a
    # the merged-away leaf has no partner in either report
    assert kids[1].id in {
        x["id"]
        for x in diff_sides(*(load_side(p, kids[1].level) for p in (small_run, other)), kids[1].level)[
            "only_in_a"
        ]
    }


COMMANDS_WITH_LLM = {"run": ["in.csv"], "assign": ["rundir", "in.csv"], "detect": ["in.jsonl"]}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_LLM))
@pytest.mark.parametrize("flag", ["--quiet", "--no-progress"])
def test_progress_has_one_spelling_and_its_alias(command: str, flag: str) -> None:
    args = build_parser().parse_args([command, *COMMANDS_WITH_LLM[command], flag])
    assert args.quiet is True
    assert build_parser().parse_args([command, *COMMANDS_WITH_LLM[command]]).quiet is False


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_LLM))
def test_the_llm_options_are_the_same_in_every_command(command: str) -> None:
    argv = [command, *COMMANDS_WITH_LLM[command], "--llm", "openai", "--base-url", "http://127.0.0.1:1/v1"]
    argv += ["--model", "m", "--max-concurrency", "3", "--max-calls", "7", "--llm-cache", "c.sqlite"]
    argv += ["--out", "somewhere"]
    args = build_parser().parse_args(argv)
    from bailclio.commands.options import llm_overrides

    assert llm_overrides(args) == {
        "llm.backend": "openai",
        "llm.base_url": "http://127.0.0.1:1/v1",
        "llm.model": "m",
        "llm.max_concurrency": 3,
        "llm.max_calls": 7,
        "llm.cache_path": "c.sqlite",
    }
    assert args.out == "somewhere"


def test_a_registered_backend_is_offered_by_the_commands() -> None:
    from bailclio.llm import register_backend, unregister_backend

    register_backend("offered-test", lambda cfg, cache, progress=True: None)
    try:
        args = build_parser().parse_args(["run", "in.csv", "--llm", "offered-test"])
        assert args.llm == "offered-test"
    finally:
        unregister_backend("offered-test")
