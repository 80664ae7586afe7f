"""GPU path against CPU path on one input: times and AMI agreement (run by bench/gpu_check.sh).

    python bench/gpu_check.py [--rows 100000] [--fit-sample 20000]

Runs, each a fresh `bailclio run` process sharing one embedding cache:

1. ``gpu-full``: embeddings on CUDA (cold: every text embedded), cuML UMAP and HDBSCAN on all rows;
2. ``gpu-sampled``: cuML on a ``--fit-sample`` sample, the rest placed (vectors cached);
3. ``cpu-sampled``: the same sampled run with ``[reduce] backend = "cpu"`` and
   ``[cluster] backend = "cpu"`` (umap-learn, hdbscan), vectors cached.

Prints each run's wall time and stages, and the leaf AMI of every run against the rows' truth
label and between the runs (GPU vs CPU agreement).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import leaves_vs_truth, make_input, run_once, stage_times  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--fit-sample", type=int, default=20000)
    args = ap.parse_args()
    from sklearn.metrics import adjusted_mutual_info_score as ami

    with tempfile.TemporaryDirectory(prefix="bailclio-gpu-") as tmp:
        work = Path(tmp)
        inp = make_input(args.rows, work / "in.parquet")
        frame = pl.read_parquet(inp)
        truth = dict(zip(frame["id"].to_list(), frame["label"].to_list(), strict=True))
        cpu_cfg = work / "cpu.toml"
        cpu_cfg.write_text('[reduce]\nbackend = "cpu"\n\n[cluster]\nbackend = "cpu"\n')
        gpu_cfg = work / "gpu.toml"
        gpu_cfg.write_text('[reduce]\nbackend = "cuml"\n\n[cluster]\nbackend = "cuml"\n')
        cache = work / "cache"
        runs = {
            "gpu-full": ["--config", str(gpu_cfg), "--sample", "0"],
            "gpu-sampled": ["--config", str(gpu_cfg), "--sample", str(args.fit_sample)],
            "cpu-sampled": ["--config", str(cpu_cfg), "--sample", str(args.fit_sample)],
        }
        results, leaves = {}, {}
        for name, extra in runs.items():
            res = run_once(inp, work / name, cache, extra)
            results[name] = res
            leaves[name], labels = leaves_vs_truth(work / name, truth)
            st = stage_times(res)
            print(
                f"{name}: {res['wall_s']:.1f} s wall, peak RSS {res['max_rss_mb']:.0f} MB, "
                f"{res['counts']['leaves']} leaves, AMI vs truth {ami(labels, leaves[name]):.3f}; "
                + ", ".join(f"{k} {v:.1f} s" for k, v in st.items()),
                flush=True,
            )
        names = list(runs)
        print("\nleaf AMI between runs (agreement):")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                print(f"  {a} vs {b}: {ami(leaves[a], leaves[b]):.3f}")
        cpu, gpu = results["cpu-sampled"]["stages"], results["gpu-sampled"]["stages"]
        for stage in ("fit reduce", "fit cluster"):
            if gpu.get(stage):
                print(
                    f"{stage}: CPU {cpu.get(stage, 0):.1f} s, GPU {gpu[stage]:.1f} s, "
                    f"x{cpu.get(stage, 0) / gpu[stage]:.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
