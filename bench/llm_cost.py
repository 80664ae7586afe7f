"""Cost of the LLM stage of ``bailclio run``: calls and tokens per conversation and per cluster.

Runs the whole pipeline with ``--llm openai`` on ~300 BailBench rows (30 subcategories x 10
prompts) against the scripted OpenAI-compatible server (a real 127.0.0.1 socket, in the same
process, ``--latency-ms`` per answer). The scripted model answers the facet prompt from the
prompt's subcategory and names clusters from their members, so the structure resembles a real
run; names are not judged here. Target: <= 1 facet call per conversation and O(clusters) naming
calls.

Each LLM run starts from an empty LLM cache; it is repeated (``--repeats``, default 3) and the
median is reported, next to the same pipeline without an LLM (the baseline, same rows, same
command) and a rerun over a full cache (which must make zero calls). Tokens are the scripted
server's counts (whitespace words + 3 per message), a stand-in for a real tokenizer.

    python bench/llm_cost.py [--rows 300] [--latency-ms 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
# The scripted server is test support (tests/support); the benchmark imports it from there.
sys.path.insert(0, str(ROOT / "tests"))


def sample_rows(n: int) -> pl.DataFrame:
    df = pl.read_csv(ROOT / "data" / "bailbench.csv")
    per = 10
    subs = df["subcategory"].unique(maintain_order=True).to_list()
    step = max(1, len(subs) // max(1, n // per))
    chosen = subs[::step][: max(1, n // per)]
    out = (
        df.filter(pl.col("subcategory").is_in(chosen)).group_by("subcategory", maintain_order=True).head(per)
    )
    return out.head(n).with_row_index("id").with_columns(pl.col("id").cast(pl.String))


def make_analyst(frame: pl.DataFrame) -> Any:
    from support.scripted_server import Reply

    sub_of = dict(zip(frame["content"].to_list(), frame["subcategory"].to_list(), strict=True))

    def subcategory_in(text: str) -> str | None:
        for content, sub in sub_of.items():
            if content.strip() in text:
                return sub
        return None

    def handler(body: dict[str, Any]) -> Reply | str:
        user = body["messages"][-1]["content"]
        if "<conversation>" in user:
            sub = subcategory_in(user) or "something unclear"
            words = re.findall(r"[A-Za-z]+", user.split("<conversation>", 1)[1])[1:9]
            return json.dumps(
                {
                    "request": f"get content about {sub.lower()}: {' '.join(words)}",
                    "bail_reason": f"the user pressed for {sub.lower()} material ({' '.join(words[:4])})",
                    "language": "English",
                    "concern": 3,
                }
            )
        if "<members>" in user:
            subs = Counter(re.findall(r"pressed for (.+?) material", user.split("<nearby>")[0]))
            top = subs.most_common(1)[0][0] if subs else "mixed requests"
            return json.dumps(
                {"name": f"Refuse {top}"[:80], "description": f"Requests for {top}. Unlike nearby."}
            )
        if "<children>" in user:
            first = re.search(r"<children>\n- (.+?):", user)
            label = first.group(1) if first else "mixed"
            return json.dumps(
                {"name": f"Cover {label}"[:80], "description": "Several related groups. One theme."}
            )
        return Reply(status=500)

    return handler


def run_once(inp: Path, out: Path, cfg: Any) -> tuple[dict[str, Any], float]:
    from bailclio.pipeline import run

    t0 = time.perf_counter()
    res = run(inp, out, cfg, force=True, progress=False)
    return res.manifest, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    from support.scripted_server import ScriptedServer

    from bailclio.cli import ensure_numba_cache
    from bailclio.config import load_config

    warnings.filterwarnings("ignore", category=UserWarning)
    ensure_numba_cache()
    tmp = Path(tempfile.mkdtemp(prefix="llm-cost-"))
    frame = sample_rows(args.rows)
    inp = tmp / "rows.csv"
    frame.write_csv(inp)
    print(f"{frame.height} BailBench rows, {frame['subcategory'].n_unique()} subcategories", flush=True)

    base_cfg = load_config(None, {})
    base_times = []
    for r in range(args.repeats):
        _, dt = run_once(inp, tmp / f"base{r}", base_cfg)
        base_times.append(dt)

    with ScriptedServer(handler=make_analyst(frame), latency_ms=args.latency_ms) as srv:
        llm_times, stage_times, manifests = [], [], []
        for r in range(args.repeats):
            cfg = load_config(
                None,
                {
                    "llm.backend": "openai",
                    "llm.base_url": srv.base_url,
                    "llm.model": "scripted-model",
                    "llm.cache_path": str(tmp / f"cache{r}.sqlite"),
                    "llm.max_concurrency": args.concurrency,
                },
            )
            manifest, dt = run_once(inp, tmp / f"llm{r}", cfg)
            llm_times.append(dt)
            t = manifest["timings_s"]
            stage_times.append(t["facets"] + t["llm names"])
            manifests.append(manifest)
        srv.reset()
        rerun, rerun_dt = run_once(inp, tmp / "llm0", cfg)
        rerun_requests = len(srv.requests)

    m = manifests[0]
    llm, c = m["llm"], m["counts"]
    st = llm["stages"]
    rows = c["accepted"]
    clusters = c["leaves"] + c["intermediate"] + c["top"]
    naming = {k: st[k] for k in ("names_leaf", "names_intermediate", "names_top")}
    naming_calls = sum(s["calls"] for s in naming.values())
    naming_tokens = sum(s["prompt_tokens"] + s["completion_tokens"] for s in naming.values())
    f = st["facets"]
    print(f"structure: {c['leaves']} leaves, {c['intermediate']} intermediate, {c['top']} top")
    print(
        f"facets: {f['calls']} calls for {rows} conversations = {f['calls'] / rows:.3f} calls/conversation; "
        f"{(f['prompt_tokens'] + f['completion_tokens']) / rows:.0f} tokens/conversation "
        f"({f['prompt_tokens'] / rows:.0f} prompt + {f['completion_tokens'] / rows:.0f} completion)"
    )
    for k, s in naming.items():
        print(
            f"{k}: {s['nodes']} nodes, {s['calls']} calls"
            f" ({s.get('keyphrase_fallbacks', 0)} keyphrase fallbacks)"
        )
    print(
        f"naming: {naming_calls} calls for {clusters} nodes = {naming_calls / clusters:.3f} calls/node; "
        f"{naming_tokens / max(naming_calls, 1):.0f} tokens/naming call, "
        f"{naming_tokens / clusters:.0f} tokens/node"
    )
    total = llm["total"]
    print(
        f"total: {total['calls']} calls = {total['calls'] / rows:.3f} per conversation; "
        f"{total['prompt_tokens'] + total['completion_tokens']} tokens; failures {total['failures']}"
    )
    same = all(mm["llm"]["total"]["calls"] == total["calls"] for mm in manifests)
    print(f"calls identical across repeats: {same}")
    med_base, med_llm, med_stage = (statistics.median(x) for x in (base_times, llm_times, stage_times))
    print(
        f"wall (median of {args.repeats}, server latency {args.latency_ms:g} ms, concurrency "
        f"{args.concurrency}): no-LLM baseline {med_base:.2f} s, with LLM {med_llm:.2f} s "
        f"(x{med_llm / med_base:.2f}), of which LLM stages {med_stage:.2f} s"
    )
    print(
        f"rerun over a full cache: {rerun_requests} server requests, "
        f"{rerun['llm']['total']['cache_hits']} cache hits, {rerun_dt:.2f} s"
    )
    return 0 if rerun_requests == 0 and same else 1


if __name__ == "__main__":
    sys.exit(main())
