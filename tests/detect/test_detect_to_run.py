"""End to end: `bailclio detect` over a real socket, then `bailclio run` on its bails.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from support.detect_model import simulated_model  # noqa: E402
from support.scripted_server import ScriptedServer

from bailclio.cli import main
from bailclio.rundir import load_run

DATA = Path(__file__).resolve().parents[2] / "data"


def test_bails_from_detect_become_a_taxonomy(tmp_path: Path) -> None:
    prompts = pl.read_csv(DATA / "bailbench.csv")["content"].to_list()[::20][:60]
    rows = []
    for i, text in enumerate(prompts):
        marker = ("BAILME " if i % 3 == 0 else "") + ("TOOLME " if i % 5 == 0 else "")
        rows.append(
            {
                "id": f"w{i}",
                "conversation": [{"role": "user", "content": marker + text}],
                "category_hint": "even" if i % 2 == 0 else "odd",
            }
        )
    src = tmp_path / "wildchat.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "detect"
    with ScriptedServer(simulated_model) as srv:
        rc = main(
            [
                "detect",
                str(src),
                "--model",
                "Qwen/Qwen2.5-7B-Instruct",
                "--base-url",
                srv.base_url,
                "--methods",
                "prompt,tool",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
    assert rc == 0
    bails = pl.read_parquet(out / "bails.parquet")
    expected = {f"w{i}" for i in range(60) if i % 3 == 0 or i % 5 == 0}
    assert set(bails["source_conversation_id"]) == expected

    run_dir = tmp_path / "run"
    assert main(["run", str(out / "bails.parquet"), "--out", str(run_dir), "--quiet"]) == 0
    run = load_run(run_dir)
    assert run.manifest["counts"]["accepted"] == len(expected)
    assert run.manifest["input"]["shape"] == "conversation"
    conv = run.conversations
    assert {"model", "bail_method", "bail_probability", "category_hint"} <= set(conv.columns)
    assert {"refused", "p_refuse"} <= set(conv.columns)  # the refusal axis reaches the run
    assert set(conv["bail_method"]) <= {"prompt", "tool"}
    # the rendered text leads with the user's request, not with the bail machinery
    assert all(t.startswith("User: ") for t in conv["text"])
    assert run.assignments.height == len(expected) and run.taxonomy.depth >= 2
