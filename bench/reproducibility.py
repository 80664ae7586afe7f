"""How far a run depends on the machine: the same input and seed under other CPU code paths.

Each scenario runs the whole default pipeline (``Taxonomer().fit``; embeddings computed afresh,
never from a cache) in a fresh process whose environment makes the numerical libraries take the
code paths another machine would take, then compares with the reference scenario of its group:

* ``native``: the libraries choose their kernels for this CPU (what happens without the CLI's
  pins, ``BAILCLIO_NATIVE_NUMERICS=1``); the "other machine" restricts MKL, oneDNN and ATen to
  AVX2, OpenBLAS to its Haswell kernels and numba to a Haswell target, as on an AVX2-only CPU;
* ``pinned``: the CLI's portable settings (``bailclio.provenance.PORTABLE_NUMERICS``) with and
  without the same AVX2-only restriction, and on one thread.

Reported per scenario: whether the embeddings, the clustering space and the leaf labels are
identical to the reference, the largest difference, and the AMI of the leaves with the reference.

Usage: python bench/reproducibility.py [--rows 400] [--input data/bailbench.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AVX2_MACHINE = {  # what an AVX2-only x86-64 CPU makes the libraries choose
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NUMBA_CPU_NAME": "haswell",
}

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def scenarios() -> list[tuple[str, str, dict[str, str]]]:
    from bailclio.provenance import PORTABLE_NUMERICS

    pinned = dict(PORTABLE_NUMERICS)
    return [
        ("native", "this CPU", {}),
        ("native", "AVX2-only CPU", AVX2_MACHINE),
        ("native", "1 thread", ONE_THREAD),
        ("pinned", "this CPU", pinned),
        ("pinned", "AVX2-only CPU", {**AVX2_MACHINE, **pinned}),
        (
            "pinned",
            "1 thread",
            {**pinned, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        ),
    ]


def worker(input_path: str, rows: int, out: str) -> None:
    import polars as pl

    from bailclio import Taxonomer

    texts = pl.read_csv(input_path)["content"].head(rows).to_list()
    tx = Taxonomer(progress=False).fit(texts)
    np.savez(
        out,
        vectors=tx.embeddings_,
        space=tx.space_,
        leaves=np.array(tx.assignments_["leaf_id"].to_list()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--input", default=str(ROOT / "data" / "bailbench.csv"))
    ap.add_argument("--worker", nargs=2, metavar=("ROWS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.input, int(args.worker[0]), args.worker[1])
        return
    from sklearn.metrics import adjusted_mutual_info_score

    base_env = {
        k: v for k, v in os.environ.items() if k not in AVX2_MACHINE and not k.endswith("_NUM_THREADS")
    }
    results: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for group, name, extra in scenarios():
            out = Path(tmp) / f"{group}-{name.replace(' ', '_')}.npz"
            env = {**base_env, **extra, "BAILCLIO_CACHE_DIR": str(Path(tmp) / f"cache-{group}-{name}")}
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")  # keyed by CPU target inside
            cmd = [sys.executable, __file__, "--input", args.input, "--worker", str(args.rows), str(out)]
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            results[f"{group}/{name}"] = dict(np.load(out))
    print(f"{args.rows} rows of {Path(args.input).name}; each group compared with its 'this CPU' run\n")
    head = f"{'scenario':<24} {'vectors':>18} {'space':>18} {'leaves':>10} {'AMI':>6} {'k':>4}"
    print(head + "\n" + "-" * len(head))
    summary = {}
    for key, r in results.items():
        ref = results[key.split("/")[0] + "/this CPU"]

        def cmp(a: np.ndarray, b: np.ndarray) -> str:
            if a.shape == b.shape and np.array_equal(a, b):
                return "identical"
            return f"max diff {np.abs(a - b).max():.1e}" if a.shape == b.shape else "other shape"

        same_leaves = bool(np.array_equal(r["leaves"], ref["leaves"]))
        ami = adjusted_mutual_info_score(ref["leaves"], r["leaves"])
        k = len(set(r["leaves"].tolist()))
        print(
            f"{key:<24} {cmp(r['vectors'], ref['vectors']):>18} {cmp(r['space'], ref['space']):>18} "
            f"{'same' if same_leaves else 'differ':>10} {ami:6.3f} {k:>4}"
        )
        summary[key] = {"same_leaves": same_leaves, "ami": round(float(ami), 4), "leaves": k}
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
