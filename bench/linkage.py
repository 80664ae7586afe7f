"""Hierarchy linkage, paired: the same clustering cut from a size-weighted Ward tree (default) and
from plain Ward over the leaf centroids, on the four labelled sets, three seeds.

    python bench/linkage.py [--datasets bailbench wildchat clinc150 banking77] [--seeds 0 1 2]
                            [--linkages ward ward_weighted]

For each dataset and seed, one run per linkage with the same seed (same embeddings, UMAP and
HDBSCAN leaves, so only the levels above the leaves differ). Printed per level above the leaves and
label column: the median (min-max) AMI of each linkage (outliers attached to their nearest leaf, as
``bench/quality.py`` scores them), the median over seeds of the paired difference, and the largest
share of rows held by one node below the root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bailclio.provenance import portable_numerics  # noqa: E402

os.environ.update(portable_numerics(dict(os.environ)))
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

from bench.quality import DATASETS, run_shape, score_bailclio  # noqa: E402


def main() -> int:
    from bailclio.config import Config
    from bailclio.pipeline import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--linkages", nargs="+", default=["ward", "ward_weighted"])
    args = ap.parse_args()
    base = args.linkages[0]
    with tempfile.TemporaryDirectory(prefix="bailclio-linkage-") as work:
        for name in args.datasets:
            inp, labels = DATASETS[name]
            ami: dict = defaultdict(lambda: defaultdict(list))
            share: dict = defaultdict(list)
            for seed in args.seeds:
                for link in args.linkages:
                    cfg = Config.model_validate({"seed": seed, "hierarchy": {"linkage": link}})
                    out = Path(work) / f"{name}-{seed}-{link}"
                    run(inp, out, cfg, force=True, progress=False)
                    for (level, truth, mode), row in score_bailclio(out, labels).items():
                        if mode == "attached" and level != "leaf":
                            ami[(level, truth)][link].append(row["ami"])
                    share[link].append(run_shape(out)["largest_share"])
            print(f"\n## {name} (seeds {args.seeds})\n")
            head = " | ".join(f"{link} AMI" for link in args.linkages)
            diffs = " | ".join(f"{link} - {base}" for link in args.linkages[1:])
            print(f"| level | truth | {head} | {diffs} |")
            print("|---|---|" + "---|" * (2 * len(args.linkages) - 1))
            for (level, truth), per in sorted(ami.items()):
                if any(len(per[link]) != len(args.seeds) for link in args.linkages):
                    continue  # a level that not every run has
                cells = [
                    f"{statistics.median(per[link]):.3f} ({min(per[link]):.3f}-{max(per[link]):.3f})"
                    for link in args.linkages
                ]
                paired = [
                    f"{statistics.median([b - a for a, b in zip(per[base], per[link], strict=True)]):+.3f}"
                    for link in args.linkages[1:]
                ]
                print(f"| {level} | {truth} | " + " | ".join(cells + paired) + " |")
            print(
                "\nlargest share of rows in one node below the root (max over seeds): "
                + ", ".join(f"{link} {max(share[link]):.3f}" for link in args.linkages)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
