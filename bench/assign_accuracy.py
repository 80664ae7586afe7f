"""How well ``bailclio assign`` places new conversations in an existing taxonomy, and how well it
abstains on conversations that belong to none of its categories.

For each seed: build a taxonomy (bailclio.pipeline.run, default config) on a random 70% of
data/bailbench.csv, place the other 30% with each placement method, and score the placed leaf's
majority subcategory and majority category (majority among the run's own rows in that leaf)
against the held-out rows' true labels, over the rows that were assigned; also the unassigned
share. The same score for the run's own rows ("in-run", each row's own leaf) is the ceiling set by
the taxonomy itself: a placement cannot beat its leaves' purity. A nearest-neighbour label vote
(the k nearest run rows vote with their *true* category, no taxonomy) is printed as an external
reference, and so is a supervised logistic regression trained on the run rows' true labels over the
same vectors: together they bound what any placement in this embedding space can reach. Medians
over the seeds.

Abstention: the neutral requests of data/neutral_requests.csv (trivia, physics puzzles, coding,
writing help, recipes, travel, ...) placed in each seed's run; the share left unassigned. The
threshold is calibrated on the run's own rows only (never on these). Floors: held-out BailBench
placed >= 90% with category accuracy >= 0.70 (knn k=10), neutral requests unassigned >= 85%.
Runs are cached under --cache and reused.

``--variants``: whether another clustering of the same run space would give purer leaves. Each
seed's saved clustering space is re-clustered with HDBSCAN variants (min_samples 1-3, leaf
selection, a larger min_cluster_size, outliers attached in the embedding space instead of the
reduced one); printed per variant: leaves, outlier share, the in-run category ceiling, and the
category accuracy of held-out rows placed by a similarity-weighted k=10 vote of the run rows'
leaves (the placement's default) - medians over the seeds.

    .venv/bin/python bench/assign_accuracy.py [--seeds 0 1 2] [--quantile 0.95] [--cache DIR] [--variants]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from bailclio.cli import ensure_numba_cache
from bailclio.config import Config
from bailclio.pipeline import run as build_run
from bailclio.rundir import is_run_dir, load_run
from bailclio.taxonomer import Taxonomer
from bailclio.taxonomy.placement import self_agreement

ROOT = Path(__file__).resolve().parent.parent
ensure_numba_cache()

METHODS = (("knn", 5), ("knn", 10), ("knn", 20), ("centroid", 10))


def majority(values: list[str]) -> str:
    return Counter(values).most_common(1)[0][0]


def one_seed(data: pl.DataFrame, seed: int, quantile: float, tmp: Path) -> dict[str, dict[str, float]]:
    shuffled = data.sample(fraction=1.0, shuffle=True, seed=seed)
    n_train = int(round(0.7 * shuffled.height))
    train, test = shuffled.head(n_train), shuffled.slice(n_train)
    csv = tmp / f"train{seed}.csv"
    train.write_csv(csv)
    t0 = time.perf_counter()
    run_dir = tmp / f"bailbench-train70-seed{seed}"
    if not is_run_dir(run_dir):
        build_run(csv, run_dir, Config(seed=seed), force=True, progress=False)
    build_s = time.perf_counter() - t0
    run = load_run(run_dir)
    conv = {col: run.conversations[col].to_list() for col in ("subcategory", "category")}
    leaf_ids = run.assignments["leaf_id"].to_list()
    by_leaf: dict[str, list[int]] = {}
    for i, lf in enumerate(leaf_ids):
        by_leaf.setdefault(lf, []).append(i)
    maj = {
        col: {lf: majority([conv[col][i] for i in rows]) for lf, rows in by_leaf.items()}
        for col in ("subcategory", "category")
    }
    tx = Taxonomer.from_run(run, progress=False)
    ref = tx.placement_reference()
    X, _ = tx.embed_new(test["content"].to_list())
    Q = ref.vectors[:0]  # filled below: the held-out rows in the run's centred space
    neutral = pl.read_csv(ROOT / "data" / "neutral_requests.csv")
    N, _ = tx.embed_new(neutral["text"].to_list())
    out: dict[str, dict[str, float]] = {}
    own = {
        col: np.mean([maj[col][lf] == t for lf, t in zip(leaf_ids, conv[col], strict=True)]) for col in maj
    }
    out["in-run (ceiling)"] = {
        "subcategory": own["subcategory"],
        "category": own["category"],
    }
    # the same ceiling over HDBSCAN's core rows only (the run's outliers, attached to their nearest
    # leaf, left out): how much of the gap to the floor the attached outliers account for
    core = ~np.asarray(run.assignments["is_outlier"].to_list(), dtype=bool)
    out["in-run, core rows (ceiling)"] = {
        col: float(
            np.mean([maj[col][lf] == t for lf, t, c in zip(leaf_ids, conv[col], core, strict=True) if c])
        )
        for col in maj
    }
    for method, k in METHODS:
        t0 = time.perf_counter()
        p = tx.place(X, method=method, k=k, quantile=quantile)
        place_s = time.perf_counter() - t0
        ok = ~p.unassigned
        neutral_p = tx.place(N, method=method, k=k, quantile=quantile)
        res = {
            "placed": float(ok.mean()),
            "expected": p.expected_placed,
            "neutral_abst": float(neutral_p.unassigned.mean()),
            "seconds": place_s,
        }
        for col in ("subcategory", "category"):
            truth = test[col].to_list()
            hits = [maj[col][lf] == t for lf, t, a in zip(p.leaf_ids, truth, ok, strict=True) if a]
            res[col] = float(np.mean(hits))
            if col == "category":
                # placed rows whose nearest run rows are mostly the run's own outliers
                via = p.neighbour_outlier[ok]
                res["via_outl"] = float(via.mean())
                res["cat_outl"] = float(np.mean(np.asarray(hits)[via])) if via.any() else float("nan")
                # abstaining on the least confident placements too, down to the 0.90 placed floor
                placed = np.flatnonzero(ok)
                keep = placed[np.argsort(-p.confidence[placed], kind="stable")][: int(round(0.9 * len(ok)))]
                res["cat_at_0.90"] = float(
                    np.mean([maj[col][p.leaf_ids[i]] == truth[i] for i in keep]) if len(keep) else np.nan
                )
        loo = self_agreement(ref, method, k)
        res["leaf_agree"] = float(np.mean(loo == ref.leaf_index))
        tops = [run.taxonomy.path(lf)[0].id for lf in ref.leaves]
        res["top_agree"] = float(
            np.mean([tops[a] == tops[b] for a, b in zip(loo, ref.leaf_index, strict=True)])
        )
        out[f"{method} k={k}"] = res
    # external reference: the k nearest run rows vote with their own true labels
    from bailclio.taxonomy.placement import centred

    Q = centred(ref, X)
    sims = Q @ ref.vectors.T
    idx = np.argsort(-sims, axis=1)[:, :10]
    out["label kNN k=10 (no taxonomy)"] = {
        col: float(
            np.mean(
                [majority([conv[col][j] for j in row]) == t for row, t in zip(idx, test[col], strict=True)]
            )
        )
        for col in ("subcategory", "category")
    }
    # external reference: a supervised classifier trained on the run rows' true labels, same vectors
    from sklearn.linear_model import LogisticRegression

    out["supervised logistic regression (no taxonomy)"] = {
        col: float(
            np.mean(
                LogisticRegression(max_iter=3000, C=10.0).fit(ref.vectors, conv[col]).predict(Q)
                == np.asarray(test[col])
            )
        )
        for col in ("subcategory", "category")
    }
    print(
        f"seed {seed}: run on {n_train} rows built in {build_s:.1f} s, {test.height} held out",
        file=sys.stderr,
    )
    return out


VARIANTS = (
    ("default", {}, False),
    ("outliers attached in embedding space", {}, True),
    ("min_samples=1", {"min_samples": 1}, False),
    ("min_samples=2", {"min_samples": 2}, False),
    ("min_samples=3", {"min_samples": 3}, False),
    ("leaf selection", {"selection_method": "leaf"}, False),
    ("min_cluster_size=8", {"min_cluster_size": 8}, False),
)


def clustering_variants(data: pl.DataFrame, seeds: list[int], cache: Path) -> None:
    from bailclio.cluster import attach_outliers, cluster_points
    from bailclio.config import ClusterConfig

    rows: dict[str, list[tuple[float, float, int, float]]] = {}
    for seed in seeds:
        shuffled = data.sample(fraction=1.0, shuffle=True, seed=seed)
        n_train = int(round(0.7 * shuffled.height))
        test = shuffled.slice(n_train)
        run = load_run(cache / f"bailbench-train70-seed{seed}")
        cats = run.conversations["category"].to_list()
        X = np.load(run.path / "embeddings.npy").astype(np.float32)
        space = np.load(run.path / "space.npy")
        Q, _ = Taxonomer.from_run(run, progress=False).embed_new(test["content"].to_list())
        mean = X.mean(axis=0)
        Xc = (X - mean) / np.linalg.norm(X - mean, axis=1, keepdims=True)
        Qc = (Q - mean) / np.linalg.norm(Q - mean, axis=1, keepdims=True)
        sims = Qc @ Xc.T
        nearest = np.argsort(-sims, axis=1)[:, :10]
        for name, params, in_embedding in VARIANTS:
            c = cluster_points(space, ClusterConfig(**params))
            labels = attach_outliers(Xc, c.raw_labels, 10) if in_embedding else c.labels
            by_leaf: dict[int, list[str]] = {}
            for lab, cat in zip(labels, cats, strict=True):
                by_leaf.setdefault(int(lab), []).append(cat)
            maj = {lab: majority(v) for lab, v in by_leaf.items()}
            ceiling = float(np.mean([maj[int(lab)] == cat for lab, cat in zip(labels, cats, strict=True)]))
            hits = []
            for r, row in enumerate(nearest):
                vote: Counter[int] = Counter()
                for j in row:
                    vote[int(labels[j])] += float(sims[r, j])
                hits.append(maj[vote.most_common(1)[0][0]] == test["category"][r])
            rows.setdefault(name, []).append(
                (ceiling, float(np.mean(hits)), len(by_leaf), c.is_outlier.mean())
            )
    print(
        f"\nclustering variants of the same run spaces (medians over seeds {seeds}; floor: category >= 0.70)"
    )
    print(f"{'variant':<40}{'leaves':>8}{'outliers':>10}{'in-run ceiling':>16}{'placed category':>17}")
    for name, vals in rows.items():
        med = [statistics.median(v[i] for v in vals) for i in range(4)]
        print(f"{name:<40}{med[2]:>8.0f}{med[3]:>10.2f}{med[0]:>16.3f}{med[1]:>17.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quantile", type=float, default=0.95)
    ap.add_argument(
        "--cache", type=Path, default=Path("/tmp/bailclio-compare/runs"), help="where runs are kept"
    )
    ap.add_argument("--variants", action="store_true", help="also re-cluster each run space (see above)")
    args = ap.parse_args()
    data = pl.read_csv(ROOT / "data" / "bailbench.csv")
    args.cache.mkdir(parents=True, exist_ok=True)
    per_seed = [one_seed(data, s, args.quantile, args.cache) for s in args.seeds]
    print(
        f"\nmedians over seeds {args.seeds} (threshold quantile {args.quantile}; accuracy over assigned rows)"
    )
    print("leaf/top agree: the run's own rows placed leave-one-out land in their own leaf / top category")
    print("placed: held-out rows placed (expected: the calibration's in-distribution rate); neutral_abst:")
    print(
        "neutral requests left unassigned. Floors (knn k=10): placed >= 0.90, category >= 0.70, "
        "neutral >= 0.85"
    )
    print("cat_range: the category accuracy's min-max over the seeds; via_outl: share of placed rows")
    print("whose nearest run rows are mostly the run's outliers; cat_outl: category accuracy of those;")
    print("cat_at_0.90: category accuracy when the least confident placements are left unassigned too,")
    print("down to 90% of the held-out rows placed (the placed floor)")
    keys = (
        "subcategory",
        "category",
        "cat_range",
        "via_outl",
        "cat_outl",
        "cat_at_0.90",
        "placed",
        "expected",
        "neutral_abst",
        "leaf_agree",
        "top_agree",
        "seconds",
    )
    print(f"{'method':<30} " + " ".join(f"{k:>11}" for k in keys))
    for name in per_seed[0]:
        med = {k: statistics.median(r[name].get(k, float("nan")) for r in per_seed) for k in keys}
        cats = [r[name]["category"] for r in per_seed]
        cells = [
            f"{min(cats):5.3f}-{max(cats):5.3f}" if k == "cat_range" else f"{med[k]:11.3f}" for k in keys
        ]
        print(f"{name:<30} " + " ".join(f"{c:>11}" for c in cells))
    if args.variants:
        clustering_variants(data, args.seeds, args.cache)


if __name__ == "__main__":
    main()
