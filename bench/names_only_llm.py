"""Names-only LLM mode against a real model: calls per node, time, and name reconstruction.

Draws a seeded random sample of ``--rows`` rows of a shared labelled set (BailBench prompts by
default; ``--rows 0``: every row), runs ``bailclio run`` with ``llm.names_only`` against an
OpenAI-compatible server, and reports:

- nodes, LLM calls, calls per node (floor: at most 3), the LLM stage's wall time and the run's;
- name-only reconstruction (each member put back into the leaf whose *name alone* embeds
  nearest to it) and name + description reconstruction, for the LLM names and for the keyphrase
  names of the same clustering (both in the run's ``taxonomy.json``), each with its Wilson 95%
  interval over the members;
- a rerun of the same command, which must make no calls.

    python bench/names_only_llm.py --base-url http://127.0.0.1:18181/v1 --model qwen2.5-coder-1.5b \\
        --data bailbench --rows 60 --cache /tmp/names-only.sqlite --json-out names-only.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio.config import load_config
from bailclio.embeddings.encoder import embed_texts
from bailclio.llmnaming.grounder import reconstruction_accuracy
from bailclio.pipeline import run
from bailclio.rundir import load_run
from bailclio.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "bailbench": ("bailbench.csv", "content", "category"),
    "wildchat": ("wildchat_1880.jsonl", "text", "topic"),
    "clinc150": ("clinc150.csv", "text", "intent"),
    "banking77": ("banking77.csv", "text", "category"),
}


def sample(name: str, rows: int, seed: int) -> pl.DataFrame:
    fname, text, label = DATASETS[name]
    path = next(p / fname for p in (ROOT.parent / "shared" / "data", ROOT / "data") if (p / fname).exists())
    df = pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_csv(path)
    df = df.select(pl.col(text).cast(pl.String).alias("prompt"), pl.col(label).cast(pl.String).alias("label"))
    if rows:
        df = df.sample(n=min(rows, df.height), shuffle=True, seed=seed)
    return df.with_row_index("id").with_columns(pl.col("id").cast(pl.String))


def texts_of(leaves: list[Any], llm: bool, with_description: bool) -> dict[str, str]:
    out = {}
    for n in leaves:
        if n.extra.get("is_outlier_node"):
            continue
        if llm:
            name, desc = n.name, n.description
        else:  # the keyphrase namer's own name and description of the same leaf
            own = n.extra.get("name_source") != "llm"
            name = n.extra.get("keyphrase_name") or n.name
            desc = n.extra.get("keyphrase_description") or (n.description if own else "")
        out[n.id] = f"{name}. {desc}" if with_description and desc else name
    return out


def measure(run_dir: Path, cfg: Any) -> dict[str, Any]:
    r = load_run(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    vectors = np.load(run_dir / "embeddings.npy")
    leaves = r.taxonomy.level(r.taxonomy.depth - 1)
    index = {n.id: i for i, n in enumerate(leaves)}
    groups = np.array([index[x] for x in r.assignments["leaf_id"].to_list()])

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.embedding, progress=False)[0]

    def recon(llm: bool, with_description: bool) -> dict[str, Any]:
        texts = {index[k]: v for k, v in texts_of(leaves, llm, with_description).items()}
        counted = int(np.isin(groups, list(texts)).sum())
        acc = reconstruction_accuracy(vectors, groups, texts, embed)
        lo, hi = wilson_interval(round(acc * counted), counted)
        return {"accuracy": round(acc, 4), "interval_95": [round(lo, 4), round(hi, 4)], "rows": counted}

    llm = manifest["llm"]
    nodes = r.taxonomy.nodes
    calls = llm["total"]["calls"]
    return {
        "rows": manifest["counts"]["accepted"],
        "nodes": len(nodes),
        "leaves": len(leaves),
        "llm_named": sum(n.extra.get("name_source") == "llm" for n in nodes),
        "calls": calls,
        "calls_per_node": round(calls / len(nodes), 3),
        "facet_calls": llm["stages"]["facets"]["requests"],
        "llm_wall_s": llm["total"]["wall_s"],
        "s_per_call": round(llm["total"]["wall_s"] / calls, 1) if calls else None,
        "name_only_reconstruction": {"llm": recon(True, False), "keyphrases": recon(False, False)},
        "name_and_description_reconstruction": {"llm": recon(True, True), "keyphrases": recon(False, True)},
        "warnings": llm.get("warnings", []),
        "names": [
            {"id": n.id, "size": n.size, "name": n.name, "keyphrase_name": n.extra.get("keyphrase_name"),
             "source": n.extra.get("name_source")}
            for n in nodes
        ],
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", choices=sorted(DATASETS), default="bailbench")
    ap.add_argument("--rows", type=int, default=60, help="seeded random sample (0: every row)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-cluster-size", type=int, default=5)
    ap.add_argument("--members", type=int, default=12, help="[naming] llm_members")
    ap.add_argument("--contrast", type=int, default=8, help="[naming] llm_contrast")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "bailclio" / "llm" / "names-only.sqlite"))
    ap.add_argument("--json-out")
    args = ap.parse_args()

    rows = sample(args.data, args.rows, args.seed)
    work = Path(tempfile.mkdtemp(prefix="names-only-bench-"))
    inp = work / "rows.csv"
    rows.select("id", "prompt").write_csv(inp)
    cfg = load_config(
        None,
        {
            "llm.backend": "openai", "llm.base_url": args.base_url, "llm.model": args.model,
            "llm.max_concurrency": 1, "llm.cache_path": args.cache, "llm.names_only": True,
            "cluster.min_cluster_size": args.min_cluster_size,
            "naming.llm_members": args.members, "naming.llm_contrast": args.contrast,
        },
    )  # fmt: skip
    t0 = time.perf_counter()
    run(inp, work / "run", cfg, force=True, progress=True)
    wall = time.perf_counter() - t0
    m = measure(work / "run", cfg)
    rerun = run(inp, work / "rerun", cfg, force=True, progress=False)
    m["run_wall_s"] = round(wall, 1)
    m["rerun_calls"] = rerun.manifest["llm"]["total"]["calls"]
    m["data"] = {"set": args.data, "rows": rows.height, "seed": args.seed, "labels": rows["label"].n_unique()}
    m["settings"] = {k: getattr(args, k) for k in ("min_cluster_size", "members", "contrast", "model")}
    checks = [
        (f"calls <= 3 x nodes ({m['calls']} calls, {m['nodes']} nodes)", m["calls"] <= 3 * m["nodes"]),
        ("no facet call", m["facet_calls"] == 0),
        (f"rerun makes zero calls ({m['rerun_calls']})", m["rerun_calls"] == 0),
    ]
    m["floors"] = [{"check": c, "ok": ok} for c, ok in checks]
    text = json.dumps(m, indent=1, ensure_ascii=False)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    for c, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {c}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
