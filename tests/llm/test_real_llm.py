"""`bailclio run` end to end against a real instruction-tuned model on a real llama.cpp server.

Six BailBench single prompts (a dozen calls or so). What a real model writes differs
from run to run and machine to machine, so nothing here depends on its words: the test checks
that what it wrote went through the product's rules. The facet asked and clustered fits single
prompts; stored answers carry no restated question and fit their length; every name is either
grounded in its members or replaced by its keyphrase name with the reason; the server's
structured output was used; and a rerun makes no call.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from support.real_llm_server import missing, serve_real_llm

from bailclio.config import Config
from bailclio.llmnaming.answers import copies_prompt

REASON = missing()
pytestmark = [
    pytest.mark.real_llm,
    pytest.mark.timeout(900),
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]
ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 6


def bench_module():
    spec = importlib.util.spec_from_file_location("real_llm_bench", ROOT / "bench" / "real_llm.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def facets_toml() -> str:
    """The benchmark's facets (the defaults without language): the same requests, so a cache
    shared with ``bench/real_llm.py`` (BAILCLIO_REAL_LLM_CACHE) serves both."""
    out = []
    for f in Config().facets:
        if f.name == "language":
            continue
        out.append("[[facets]]")
        for key, value in f.model_dump(exclude_none=True).items():
            out.append(f"{key} = {json.dumps(value)}")
    return "\n".join(out)


def run_cli(inp: Path, out: Path, base: str, cache: Path, config: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "bailclio.cli", "run", str(inp), "--out", str(out), "--force", "--quiet",
        "--config", str(config), "--llm", "openai", "--base-url", base, "--model", "qwen2.5-coder-1.5b",
        "--llm-cache", str(cache),
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=800)


def test_run_against_a_real_model_keeps_the_products_rules(tmp_path: Path) -> None:
    # one prompt from each of six BailBench categories: the benchmark's first rows
    rows = bench_module().draw("bailbench", 10, 6, 0).head(N_ROWS)
    inp = tmp_path / "prompts.csv"
    rows.write_csv(inp)
    config = tmp_path / "real.toml"
    config.write_text(
        "[cluster]\nmin_cluster_size = 2\n\n[llm]\nmax_concurrency = 1\nmax_calls = 20\n\n"
        + facets_toml()
        + "\n"
    )
    cache = Path(os.environ.get("BAILCLIO_REAL_LLM_CACHE", tmp_path / "llm.sqlite"))
    with serve_real_llm(tmp_path) as base:
        first = run_cli(inp, tmp_path / "run", base, cache, config)
        # 0: complete; 4: written, with the failed part of the LLM stage said (an imperfect model)
        assert first.returncode in (0, 4), first.stderr[-3000:]
        again = run_cli(inp, tmp_path / "again", base, cache, config)
        assert again.returncode == first.returncode, again.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    if first.returncode == 4:
        assert manifest["status"] == "incomplete" and manifest["incomplete"], manifest.get("incomplete")
        assert "INCOMPLETE" in first.stdout
    else:
        assert manifest["status"] == "complete"
    llm = manifest["llm"]
    print(json.dumps({k: llm[k] for k in ("clustering", "grounding", "warnings", "total")}, indent=1))
    assert llm["backend_stats"]["json_mode"] == "json_schema"  # llama.cpp took the schema
    assert llm["facet"] == "request" and llm["clustering"]["facet_chosen_by"] == "input"
    per = llm["stages"]["facets"]["per_facet"]
    assert per["bail_reason"]["asked_rows"] == 0 and per["request"]["asked_rows"] == N_ROWS
    conv = pl.read_parquet(tmp_path / "run" / "conversations.parquet")
    assert conv["facet_bail_reason"].null_count() == N_ROWS
    answers = [a for a in conv["facet_request"].to_list() if a is not None]
    assert answers, conv.select("facets_error", "facets_issues").to_dicts()
    for a in answers:
        assert len(a) <= 300 and not a.lower().startswith("the user's overall request")
    # each row without an answer says why
    for rec in conv.filter(pl.col("facet_request").is_null()).iter_rows(named=True):
        assert rec["facets_error"] or rec["facets_issues"]

    tax = json.loads((tmp_path / "run" / "taxonomy.json").read_text())
    task_words = " ".join([Config().facets[0].question, "imperative phrase verb first at most ten words"])
    for node in tax["nodes"]:
        assert node["name_source"] in ("llm", "keyphrases", "fixed")
        if node["name_source"] == "llm" and "grounded" in node:
            assert node["grounded"] is True, node  # an ungrounded LLM name never stays
        if node["name_source"] == "keyphrases":
            assert node["name_error"]
        if node["name_source"] == "llm":
            assert not copies_prompt(node["name"], task_words)
        rev = node.get("revision")
        # a revised text is kept only when it puts more members back, and is grounded
        if rev and rev.get("tried"):
            best = max(t["gain"] for t in rev["tried"])
            assert (rev["kept"] is not None) == (best > 0), rev
            if rev["kept"] and not rev.get("fallback"):
                suffixed = r"( \(\d+\))?"  # a repeated name's (2), (3)
                name = node["name"]
                named = [t for t in rev["tried"] if re.fullmatch(re.escape(t["name"]) + suffixed, name)]
                assert any(t["grounded"] and t["gain"] == best for t in named), rev
        if rev and rev.get("fallback"):  # taken only while the level placed fewer than keyphrases
            assert rev["fallback"]["gain"] > 0, rev
            keyphrase = rev["fallback"]["kind"] == "keyphrases"
            assert (node["name_source"] == "keyphrases") == keyphrase, node
            if keyphrase:
                assert str(node["name_error"]).startswith("reconstruction:"), node
    if llm["grounding"].get("checked"):
        assert 0.0 <= llm["grounding"]["grounded_share"] <= 1.0
    leaf = llm["stages"].get("names_leaf", {})
    if leaf.get("reconstruction_keyphrases") is not None:  # held to the keyphrase texts, or said not to be
        below = leaf["reconstruction_after"] < leaf["reconstruction_keyphrases"]
        assert below == any("keyphrase texts" in w for w in llm["warnings"]), (leaf, llm["warnings"])
    assert tax["clustered_on"] in ("facet", "text", "mixed")

    rerun = json.loads((tmp_path / "again" / "manifest.json").read_text())["llm"]["total"]
    assert rerun["calls"] == 0 and rerun["cache_hits"] > 0
    assert json.loads((tmp_path / "again" / "taxonomy.json").read_text())["nodes"] == tax["nodes"]
