"""Explorer responsiveness on large runs: cold load and reruns of each heavy view, via AppTest.

Builds synthetic run directories (10k and 100k conversations; 10 top categories, 40 intermediate,
200 leaves, transcripts with bail metadata, 384-d embeddings) by writing the run files directly,
then times with Streamlit's AppTest (median of --repeats):

* cold: a new session with the run cache cleared (read + prepare + first page);
* rerun views: the Taxonomy page again, the Map, the largest node's page, a search.

Usage: python bench/explorer_load.py [--sizes 10000 100000] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "weapon",
    "bomb",
    "poison",
    "hack",
    "phishing",
    "fraud",
    "forge",
    "harass",
    "threat",
    "insult",
    "roleplay",
    "jailbreak",
    "self-harm",
    "drug",
    "scam",
    "deepfake",
    "privacy",
    "dox",
    "malware",
    "extremist",
    "violent",
    "gore",
    "abuse",
    "cheat",
    "lie",
]


def build_run(out: Path, n: int, seed: int = 0) -> Path:
    from bailclio.taxonomy.model import FORMAT_VERSION, Node, Taxonomy

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_top, n_mid, n_leaf = 10, 40, 200
    leaf = rng.integers(0, n_leaf, n)
    mid_of_leaf = np.arange(n_leaf) % n_mid
    top_of_mid = np.arange(n_mid) % n_top
    mid, top = mid_of_leaf[leaf], top_of_mid[mid_of_leaf[leaf]]
    ids = [f"c{i:07d}" for i in range(n)]
    words = np.array(WORDS)
    texts = [
        "user: "
        + " ".join(words[rng.integers(0, len(WORDS), 40)])
        + f" request {i}\nassistant: I'd rather not."
        for i in range(n)
    ]
    conv = pl.DataFrame(
        {
            "conversation_id": ids,
            "text": texts,
            "conversation": [
                [
                    {"role": "user", "content": t.split("\n")[0][6:]},
                    {"role": "assistant", "content": "I'd rather not."},
                ]
                for t in texts
            ],
            "model": [("model-a", "model-b", "model-c")[i % 3] for i in range(n)],
            "bail_method": [("prompt", "string", "tool")[i % 3] for i in range(n)],
            "bail_turn": [1] * n,
            "journal": ["left because the request was harmful"] * n,
            "category": [f"cat{int(t)}" for t in top],
            "source_line": np.arange(1, n + 1),
        },
        schema_overrides={"conversation": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))},
    )
    centers = rng.normal(size=(n_leaf, 2)) * 10
    xy = centers[leaf] + rng.normal(size=(n, 2))
    assign = pl.DataFrame(
        {
            "conversation_id": ids,
            "leaf_id": [f"L{v}" for v in leaf],
            "top_id": [f"T{v}" for v in top],
            "path": [[f"T{t}", f"M{m}", f"L{lf}"] for t, m, lf in zip(top, mid, leaf, strict=True)],
            "is_outlier": rng.random(n) < 0.1,
            "outlier_score": rng.random(n).astype(np.float32),
            "x": xy[:, 0].astype(np.float32),
            "y": xy[:, 1].astype(np.float32),
        }
    )
    conv.write_parquet(out / "conversations.parquet")
    assign.write_parquet(out / "assignments.parquet")
    sizes = [np.bincount(a, minlength=k) for a, k in ((top, n_top), (mid, n_mid), (leaf, n_leaf))]
    nodes = []
    for level, (prefix, k) in enumerate((("T", n_top), ("M", n_mid), ("L", n_leaf))):
        for g in range(k):
            parent = None if level == 0 else (f"T{top_of_mid[g]}" if level == 1 else f"M{mid_of_leaf[g]}")
            kw = [WORDS[(g * 3 + j + level) % len(WORDS)] for j in range(3)]
            nodes.append(
                Node(
                    f"{prefix}{g}",
                    parent,
                    level,
                    ", ".join(kw),
                    f"About {kw[0]}",
                    int(sizes[level][g]),
                    kw,
                    ids[:3],
                )
            )
    Taxonomy(nodes).save(out / "taxonomy.json")
    emb = rng.normal(size=(n, 384)).astype(np.float32)
    np.save(out / "embeddings.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": "2026-01-01T00:00:00+00:00",
        "input": {"path": f"synthetic-{n}.jsonl"},
        "config": {"embedding": {"model": "synthetic"}, "llm": {"backend": "none"}},
        "counts": {"accepted": n, "outliers": int(assign["is_outlier"].sum())},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_run(run_dir: Path, repeats: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def fresh() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.session_state["runs_root"] = str(run_dir)
        return at

    def check(at: AppTest) -> None:
        if at.exception:
            raise RuntimeError(at.exception[0].value)

    results: dict[str, list[float]] = {k: [] for k in ("cold", "taxonomy", "map", "node", "search")}
    big = max(json.loads((run_dir / "taxonomy.json").read_text())["nodes"], key=lambda d: d["size"])["id"]
    for _ in range(repeats):
        st.cache_resource.clear()
        st.cache_data.clear()
        at = fresh()
        results["cold"].append(timed(at.run))
        check(at)
        results["taxonomy"].append(timed(at.run))
        at.sidebar.radio(key="view").set_value("Map")
        at.run()
        results["map"].append(timed(at.run))
        at.sidebar.selectbox(key="node").set_value(big)
        at.sidebar.radio(key="view").set_value("Node")
        at.run()
        results["node"].append(timed(at.run))
        at.sidebar.radio(key="view").set_value("Search")
        at.run()
        at.text_input(key="q").set_value("deepfake")
        results["search"].append(timed(at.run))
        check(at)
    return {k: statistics.median(v) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", help="build the run directories here (default: a temporary folder)")
    args = ap.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="explorer-bench-"))
    rows = {}
    for n in args.sizes:
        run_dir = base / f"synthetic-{n}"
        if not (run_dir / "manifest.json").exists():
            t = timed(lambda n=n, d=run_dir: build_run(d, n))
            print(f"built {run_dir} in {t:.1f} s", file=sys.stderr)
        rows[n] = bench_run(run_dir, args.repeats)
    baseline = args.sizes[0]
    cols = list(next(iter(rows.values())))
    print(f"explorer timings, seconds (median of {args.repeats}); ratio vs {baseline:,} rows")
    print(f"{'rows':>9}  " + "  ".join(f"{c:>14}" for c in cols))
    for n, r in rows.items():
        cells = [f"{r[c]:6.3f} (x{r[c] / rows[baseline][c]:4.1f})" for c in cols]
        print(f"{n:>9,}  " + "  ".join(f"{c:>14}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
