"""`bailclio run --llm openai` against a real `vllm serve` (vLLM's CPU build, `make vllm-env`).

The served model is the tiny randomly initialised Llama of ``vllm_server.py`` (the session's
``vllm_server`` fixture, shared with the detect test), so its words mean nothing; what this
checks is the real server path: structured outputs (json_schema) constrain every reply to the
facet and name schemas, replies are parsed and validated, failures fall back
visibly, and a rerun is served from the cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from support.llm_stage_model import make_rows, write_rows
from support.vllm_server import HAVE_VLLM_ENV, SKIP_REASON

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not HAVE_VLLM_ENV, reason=SKIP_REASON),
]


def test_run_with_vllm_serve_uses_structured_outputs_and_the_cache(vllm_server: str, tmp_path: Path) -> None:
    from bailclio.config import Config, load_config
    from bailclio.pipeline import run

    inp = write_rows(tmp_path / "bails.jsonl", make_rows(per_theme=3, injection=False))
    cfg = load_config(
        None,
        {
            "llm.backend": "openai",
            "llm.base_url": vllm_server,
            "llm.model": "tiny",
            "llm.cache_path": str(tmp_path / "cache.sqlite"),
            "llm.max_tokens": 1000,
            "llm.max_concurrency": 8,
            "llm.conversation_chars": 1500,
            "cluster.min_cluster_size": 3,
            # short text answers keep a random model's replies (which run to the length limit)
            # within max_tokens
            "facets": [{**f.model_dump(), "max_chars": min(f.max_chars, 60)} for f in Config().facets],
        },
    )
    res = run(inp, tmp_path / "run", cfg, progress=False)
    llm = res.manifest["llm"]
    print(json.dumps({k: llm["stages"][k] for k in llm["stages"]}, indent=1))  # shown with -rP
    assert llm["backend_stats"]["json_mode"] == "json_schema"  # the server took the schema
    facets = llm["stages"]["facets"]
    assert facets["rows"] == 24 and facets["calls"] >= 24
    assert facets["ok_rows"] + facets["failed_rows"] == 24
    conv = pl.read_parquet(res.path / "conversations.parquet")
    ok = conv.filter(pl.col("facets_error").is_null())
    assert ok.height == facets["ok_rows"]
    assert facets["ok_rows"] >= 12, facets["failure_reasons"]  # constrained replies validate
    # Whatever the random model says, constrained decoding keeps answers inside the schema.
    assert ok["facet_concern"].is_between(1, 5).all()
    assert (ok["facet_language"].str.len_chars() <= 40).all()
    for node in res.taxonomy.nodes:
        assert node.extra["name_source"] in ("llm", "keyphrases", "fixed")
        if node.extra["name_source"] == "keyphrases":
            assert node.extra["name_error"]
    assert res.assignments.height == 24

    shutil.rmtree(tmp_path / "run")
    again = run(inp, tmp_path / "run", cfg, progress=False)
    total = again.manifest["llm"]["total"]
    assert total["cache_hits"] >= facets["ok_rows"]
    if llm["total"]["failures"] == 0:  # every reply was cached, valid or not: nothing is asked again
        assert total["calls"] == 0
    assert again.assignments.equals(res.assignments)
    assert json.loads((again.path / "taxonomy.json").read_text())["facet"] == "bail_reason"
