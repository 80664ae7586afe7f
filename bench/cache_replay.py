"""Does an LLM cache written by one version of bailclio replay on another?

Runs the same LLM work twice against the scripted OpenAI-compatible server (a real 127.0.0.1
socket): the whole ``run`` pipeline with ``--llm openai`` on the synthetic bail dataset of the
test support (facets, leaf and parent names), then a batch of direct requests covering every
part of a request that enters the cache key (JSON schema, prefill, tools, logprobs, prompt
logprobs, ``n``, seed). Everything goes through the LLM cache at ``--cache``.

Run it once with an empty cache under one version (it fills the cache), then again with the same
``--cache`` under another: the second prints ``chat requests sent: 0`` and a cache hit for every
call when the cache keys did not change. The preflight check is not LLM work and is not counted.

    python bench/cache_replay.py --cache /tmp/replay/llm.sqlite --out /tmp/replay/run1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The scripted server is test support (tests/support); the benchmark imports it from there.
sys.path.insert(0, str(ROOT / "tests"))

from support.llm_stage_model import analyst, make_rows, prompt_kind, write_rows  # noqa: E402
from support.scripted_server import Reply, ScriptedServer  # noqa: E402

from bailclio.config import load_config  # noqa: E402
from bailclio.llm import ChatRequest, make_backend  # noqa: E402
from bailclio.pipeline import run  # noqa: E402

MODEL = "scripted-model"


def direct_requests() -> list[ChatRequest]:
    """Requests that together use every field of :class:`ChatRequest` that enters the key."""
    user = [{"role": "user", "content": "Name the situation in three words."}]
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    tool = {"type": "function", "function": {"name": "end_conversation", "parameters": {"type": "object"}}}
    return [
        ChatRequest(messages=user, max_tokens=16),
        ChatRequest(messages=user, max_tokens=16, temperature=0.7, seed=3, n=2),
        ChatRequest(messages=user, json_schema=schema, schema_name="Label"),
        ChatRequest(messages=user, prefill="The situation is"),
        ChatRequest(messages=user, tools=[tool]),
        ChatRequest(messages=user, top_logprobs=5, max_tokens=4),
        ChatRequest(messages=user, prompt_logprobs=1, max_tokens=1),
        ChatRequest(messages=user, max_tokens=16, tag="not part of the key"),
    ]


def answer(body: dict[str, Any]) -> Reply | str | None:
    """The scripted analyst for the pipeline's prompts, the server's default reply otherwise."""
    return analyst(body) if prompt_kind(body) in ("facets", "leaf", "parent") else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="the LLM cache (SQLite) to fill or replay")
    ap.add_argument("--out", required=True, help="run directory to write (replaced)")
    args = ap.parse_args(argv)
    with ScriptedServer(handler=answer, model=MODEL) as srv, tempfile.TemporaryDirectory() as tmp:
        data = write_rows(Path(tmp) / "bails.jsonl", make_rows(per_theme=6))
        overrides: dict[str, Any] = {
            "llm.backend": "openai",
            "llm.base_url": srv.base_url,
            "llm.model": MODEL,
            "llm.cache_path": args.cache,
            "llm.max_retries": 1,
        }
        cfg = load_config(None, overrides)
        result = run(data, args.out, cfg, force=True, progress=False)
        total = result.manifest["llm"]["total"]
        backend = make_backend(cfg.llm, None, progress=False)
        assert backend is not None
        direct = backend.generate(direct_requests())
        stats = backend.stats()
        backend.close()
    print(f"pipeline: {total['calls']} calls, {total['cache_hits']} cache hits")
    print(f"direct: {stats['calls']} calls, {stats['cache_hits']} cache hits of {len(direct)} requests")
    print(f"failed direct requests: {sum(not r.ok for r in direct)}")
    print(f"chat requests sent: {len(srv.requests)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
