"""How well ``bailclio assign`` places new conversations in an existing taxonomy.

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

    .venv/bin/python bench/assign_accuracy.py [--seeds 0 1 2] [--quantile 0.95]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bailclio.cli import ensure_numba_cache  # noqa: E402
from bailclio.config import Config  # noqa: E402
from bailclio.embeddings.encoder import embed_texts  # noqa: E402
from bailclio.pipeline import run as build_run  # noqa: E402
from bailclio.rundir import load_run  # noqa: E402
from bailclio.taxonomy.assign import place, reference, run_embedding_config, self_agreement, transform  # noqa: E402

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
    build_run(csv, tmp / f"run{seed}", Config(seed=seed), force=True, progress=False)
    build_s = time.perf_counter() - t0
    run = load_run(tmp / f"run{seed}")
    conv = {col: run.conversations[col].to_list() for col in ("subcategory", "category")}
    leaf_ids = run.assignments["leaf_id"].to_list()
    by_leaf: dict[str, list[int]] = {}
    for i, lf in enumerate(leaf_ids):
        by_leaf.setdefault(lf, []).append(i)
    maj = {
        col: {lf: majority([conv[col][i] for i in rows]) for lf, rows in by_leaf.items()}
        for col in ("subcategory", "category")
    }
    ref = reference(run)
    X, _ = embed_texts(test["content"].to_list(), run_embedding_config(run), progress=False)
    Q = transform(ref, X)
    out: dict[str, dict[str, float]] = {}
    own = {
        col: np.mean([maj[col][lf] == t for lf, t in zip(leaf_ids, conv[col], strict=True)]) for col in maj
    }
    out["in-run (ceiling)"] = {
        "subcategory": own["subcategory"],
        "category": own["category"],
        "unassigned": 0.0,
    }
    for method, k in METHODS:
        t0 = time.perf_counter()
        p = place(ref, Q, method=method, k=k, quantile=quantile)
        place_s = time.perf_counter() - t0
        ok = ~p.unassigned
        res = {"unassigned": float(p.unassigned.mean()), "seconds": place_s}
        for col in ("subcategory", "category"):
            truth = test[col].to_list()
            hits = [maj[col][lf] == t for lf, t, a in zip(p.leaf_ids, truth, ok, strict=True) if a]
            res[col] = float(np.mean(hits))
        loo = self_agreement(ref, method, k)
        res["leaf_agree"] = float(np.mean(loo == ref.leaf_index))
        tops = [run.taxonomy.path(lf)[0].id for lf in ref.leaves]
        res["top_agree"] = float(
            np.mean([tops[a] == tops[b] for a, b in zip(loo, ref.leaf_index, strict=True)])
        )
        out[f"{method} k={k}"] = res
    # external reference: the k nearest run rows vote with their own true labels
    sims = Q @ ref.vectors.T
    idx = np.argsort(-sims, axis=1)[:, :10]
    out["label kNN k=10 (no taxonomy)"] = {
        col: float(
            np.mean(
                [majority([conv[col][j] for j in row]) == t for row, t in zip(idx, test[col], strict=True)]
            )
        )
        for col in ("subcategory", "category")
    } | {"unassigned": 0.0}
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
    } | {"unassigned": 0.0}
    print(
        f"seed {seed}: run on {n_train} rows built in {build_s:.1f} s, {test.height} held out",
        file=sys.stderr,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quantile", type=float, default=0.95)
    args = ap.parse_args()
    data = pl.read_csv(ROOT / "data" / "bailbench.csv")
    with tempfile.TemporaryDirectory() as d:
        per_seed = [one_seed(data, s, args.quantile, Path(d)) for s in args.seeds]
    print(
        f"\nmedians over seeds {args.seeds} (threshold quantile {args.quantile}; accuracy over assigned rows)"
    )
    print("leaf/top agree: the run's own rows placed leave-one-out land in their own leaf / top category")
    keys = ("subcategory", "category", "unassigned", "leaf_agree", "top_agree", "seconds")
    print(f"{'method':<30} " + " ".join(f"{k:>11}" for k in keys))
    for name in per_seed[0]:
        med = {k: statistics.median(r[name].get(k, float("nan")) for r in per_seed) for k in keys}
        print(f"{name:<30} " + " ".join(f"{med[k]:11.3f}" for k in keys))


if __name__ == "__main__":
    main()
