"""How `bailclio run` grows with N, full and sampled, to 200k rows: times, memory, quality.

    python bench/scale.py [--sizes 10000 50000 200000] [--cold-sizes ...] [--full-sizes 10000 50000]
                          [--ami-size 50000] [--ray-sizes 200000] [--fit-sample 20000]
                          [--backend torch] [--work DIR]
    python bench/scale.py --quality [--ami-size 50000] [--seeds 0 1 2] [--fit-sample 20000]
                          [--variant NAME="--flag value" ...]

Rows are the texts of CLINC150, Banking77 and BailBench (data/ or ../shared/data) repeated with
small perturbations (a word dropped, two words swapped, a short suffix), so every row is a distinct
text that must be embedded; each row keeps its source's finest label (intent, category,
subcategory) as truth. Every run is a fresh `bailclio run` process:

* cold: sampled run (fit on ``--fit-sample`` rows, the rest placed) with an empty embedding cache;
* warm: the same run again, vectors cached (one cache for every size: each size is a prefix of
  the largest, whose cold run fills it; smaller cold runs start from an empty cache of their own);
* full: a warm run with sampling off (every row through UMAP and HDBSCAN), at ``--full-sizes``;
* ray: the warm sampled run with ``--engine ray`` on a local Ray instance, at ``--ray-sizes``.

Printed: whole-process wall time and peak RSS (the driver process's; Ray workers are separate
processes, so their memory is listed apart), per-stage times from the manifest, the growth exponent
of each (slope of log time against log N over the sizes run), and at ``--ami-size`` the AMI of the
sampled and the full run's leaves against the truth and against each other (same seed).

``--quality``: at ``--ami-size`` rows only, for each of ``--seeds``, a full build and a sampled
build with the same seed (vectors cached after the first), and per ``--variant`` a sampled build
with extra ``bailclio run`` flags; printed: each build's leaf AMI against the truth, the sampled
builds' AMI against the full build, and the median over seeds of (sampled - full) against the
truth, the floor being -0.02.

``--backend`` runs every build with that ``[embedding] backend`` (the vectors are cached per
back-end); ``--work DIR`` keeps inputs, caches and runs there, so a second invocation is warm.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SUFFIXES = ["", " please", " now", " in detail", " quickly", " for a story", " step by step", " again"]
SOURCES = {  # file: (text column, label column)
    "clinc150.csv": ("text", "intent"),
    "banking77.csv": ("text", "category"),
    "bailbench.csv": ("content", "subcategory"),
}

CHILD = r"""
import json, resource, sys
from bailclio.cli import main
rc = main(sys.argv[1:-1])
json.dump({"rc": rc, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024},
          open(sys.argv[-1], "w"))
sys.exit(rc)
"""


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) > 4:
        op = rng.randrange(3)
        if op == 0:
            del words[rng.randrange(len(words))]
        elif op == 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + rng.choice(SUFFIXES)


def base_rows() -> list[tuple[str, str, str]]:
    rows = []
    for file, (text, label) in SOURCES.items():
        path = next((d / file for d in (ROOT / "data", SHARED) if (d / file).exists()), None)
        if path is None:
            raise SystemExit(f"{file} not found in data/ or ../shared/data")
        frame = pl.read_csv(path)
        source = file.split(".")[0]
        rows += [
            (t, f"{source}:{lab}", source) for t, lab in zip(frame[text], frame[label], strict=True) if t
        ]
    return rows


def make_input(n: int, path: Path, seed: int = 0) -> Path:
    """The first ``n`` rows of one fixed sequence: every size is a prefix of the larger ones."""
    base = base_rows()
    rng = random.Random(seed)
    rng.shuffle(base)
    seen: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    for row in base[:n]:
        seen.add(row[0])
        rows.append(row)
    while len(rows) < n:
        text, label, source = rng.choice(base)
        t = perturb(text, rng)
        if t not in seen:
            seen.add(t)
            rows.append((t, label, source))
    pl.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "text": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "source": [r[2] for r in rows],
        }
    ).write_parquet(path)
    return path


BACKEND: list[str] = []  # extra run flags naming the embedding back-end (--backend)


def run_once(inp: Path, out: Path, cache: Path, extra: list[str]) -> dict:
    stats = out.with_suffix(".stats.json")
    env = dict(
        os.environ,
        BAILCLIO_CACHE_DIR=str(cache),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        NUMBA_CACHE_DIR=str(Path.home() / ".cache" / "bailclio" / "numba"),
    )
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            "run",
            str(inp),
            "--out",
            str(out),
            "--force",
            "--quiet",
            *BACKEND,
            *extra,
            str(stats),
        ],
        check=True,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "wall_s": wall,
        **json.loads(stats.read_text()),
        "stages": manifest["timings_s"],
        "counts": manifest["counts"],
        "scale": manifest.get("scale"),
        "embedding": manifest.get("embedding"),
    }


def stage_times(res: dict) -> dict[str, float]:
    """Per-stage seconds of a run: embed / reduce / cluster of the fit, then placement."""
    st = res["stages"]
    fit = "fit " if any(k.startswith("fit ") for k in st) else ""
    out = {
        "fit embed": st.get(f"{fit}embed", 0.0),
        "fit reduce": st.get(f"{fit}reduce", 0.0),
        "fit cluster": st.get(f"{fit}cluster", 0.0),
    }
    placed = (res.get("embedding") or {}).get("placed") or {}
    if "place" in st:
        out["place (all)"] = st["place"]
        out["place: embed"] = placed.get("seconds", 0.0)
        out["place: kNN"] = placed.get("place_seconds", 0.0)
        out["place: read+write"] = max(0.0, st["place"] - out["place: embed"] - out["place: kNN"]) + st.get(
            "write", 0.0
        )
    out["total"] = st["total"]
    return out


def exponent(ns: list[int], ts: list[float]) -> float | None:
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts, strict=True) if t > 0.05]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def leaves_vs_truth(run_dir: Path, truth: dict[str, str]) -> tuple[list[str], list[str]]:
    a = pl.read_parquet(run_dir / "assignments.parquet", columns=["conversation_id", "leaf_id"])
    return a["leaf_id"].to_list(), [truth[c] for c in a["conversation_id"].to_list()]


def quality(args: argparse.Namespace, work: Path) -> int:
    """Sampled vs full builds at ``--ami-size`` rows, per seed (see the module docstring)."""
    import shlex
    import statistics

    from sklearn.metrics import adjusted_mutual_info_score as ami

    n = args.ami_size
    inp = work / f"in-{n}.parquet"
    if not inp.exists():
        make_input(n, inp)
    frame = pl.read_parquet(inp)
    truth = dict(zip(frame["id"].to_list(), frame["label"].to_list(), strict=True))
    cache = work / f"cache-{n}"
    variants = [("sampled", [])]
    for v in args.variant or []:
        name, _, flags = v.partition("=")
        variants.append((name, shlex.split(flags)))
    rows: dict[str, list[float]] = {}
    print(f"{n:,} rows, fit sample {args.fit_sample}, seeds {args.seeds}; {os.cpu_count()} CPUs\n")
    print("| seed | build | leaves | wall s | AMI vs truth | AMI vs full | vs truth - full |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        full_dir = work / f"q-full-{seed}"
        if args.reuse_full and (full_dir / "manifest.json").exists():
            full = {
                "wall_s": float("nan"),
                "counts": json.loads((full_dir / "manifest.json").read_text())["counts"],
            }
        else:
            full = run_once(inp, full_dir, cache, ["--sample", "0", "--seed", str(seed)])
        f_leaf, f_truth = leaves_vs_truth(full_dir, truth)
        f_ami = ami(f_truth, f_leaf)
        line = f"| {seed} | full | {full['counts']['leaves']} | {full['wall_s']:.0f} | {f_ami:.3f} | | |"
        print(line, flush=True)
        for name, flags in variants:
            out = work / f"q-{name}-{seed}"
            res = run_once(inp, out, cache, ["--sample", str(args.fit_sample), "--seed", str(seed), *flags])
            s_leaf, s_truth = leaves_vs_truth(out, truth)
            assert s_truth == f_truth, "runs list rows in different orders"
            s_ami, vs_full = ami(s_truth, s_leaf), ami(f_leaf, s_leaf)
            rows.setdefault(name, []).append(s_ami - f_ami)
            rows.setdefault(f"{name} vs full", []).append(vs_full)
            print(
                f"| {seed} | {name} | {res['counts']['leaves']} | {res['wall_s']:.0f} | {s_ami:.3f} "
                f"| {vs_full:.3f} | {s_ami - f_ami:+.3f} |",
                flush=True,
            )
    print("\nmedian over seeds:\n")
    print("| build | AMI vs full | (AMI vs truth) - full's | floor -0.02 |")
    print("|---|---|---|---|")
    for name, _ in variants:
        d = statistics.median(rows[name])
        vs = statistics.median(rows[f"{name} vs full"])
        print(f"| {name} | {vs:.3f} | {d:+.3f} | {'met' if d >= -0.02 else 'NOT met'} |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 200000])
    ap.add_argument("--cold-sizes", type=int, nargs="*", help="sizes also run cold (default: all)")
    ap.add_argument("--full-sizes", type=int, nargs="*", default=[10000, 50000])
    ap.add_argument("--ami-size", type=int, default=50000)
    ap.add_argument("--ray-sizes", type=int, nargs="*", default=[200000])
    ap.add_argument("--fit-sample", type=int, default=20000)
    ap.add_argument("--keep", "--work", dest="keep", help="keep inputs, caches and runs in this folder")
    ap.add_argument("--backend", help="[embedding] backend for every build (default: the config's)")
    ap.add_argument("--quality", action="store_true", help="sampled vs full builds at --ami-size only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", action="append", help='NAME="--run flags": another sampled build')
    ap.add_argument("--reuse-full", action="store_true", help="--quality: keep full builds already in --work")
    args = ap.parse_args()
    if args.backend or args.quality:
        work = Path(args.keep or tempfile.mkdtemp(prefix="bailclio-scale-"))
        work.mkdir(parents=True, exist_ok=True)
        if args.backend:
            cfg = work / f"backend-{args.backend}.toml"
            cfg.write_text(f'[embedding]\nbackend = "{args.backend}"\n')
            BACKEND[:] = ["--config", str(cfg)]
        args.keep = str(work)
        if args.quality:
            return quality(args, work)
    cold_sizes = set(args.sizes if args.cold_sizes is None else args.cold_sizes)
    sizes = sorted(set(args.sizes) | set(args.full_sizes) | set(args.ray_sizes))
    sample = ["--sample", str(args.fit_sample)]
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bailclio-scale-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        biggest = make_input(max(sizes), work / f"in-{max(sizes)}.parquet")
        frame = pl.read_parquet(biggest)
        truth = dict(zip(frame["id"].to_list(), frame["label"].to_list(), strict=True))
        # Every size is a prefix of the largest, so one shared cache serves every warm run: the
        # largest cold run fills it (cold because it starts empty); smaller cold runs get an empty
        # cache of their own, removed after. A run that is not cold but finds rows missing from
        # the shared cache (no cold run that large came first) is marked with "*".
        shared = work / "cache"
        plan: list[tuple[str, int, list[str]]] = [
            ("cold", n, sample) for n in sorted(cold_sizes, reverse=True)
        ]
        for n in sizes:
            if n in args.sizes:
                plan.append(("warm", n, sample))
            if n in args.full_sizes:
                plan.append(("full", n, ["--sample", "0"]))
            if n in args.ray_sizes:
                plan.append(("ray", n, [*sample, "--engine", "ray"]))
        marker = work / "cache-filled-rows"
        filled = int(marker.read_text()) if marker.exists() else 0
        for kind, n, extra in plan:
            inp = work / f"in-{n}.parquet"
            if not inp.exists():
                frame.head(n).write_parquet(inp)
            own = kind == "cold" and (filled > 0 or n != max(cold_sizes))
            cache = work / f"cache-cold-{n}" if own else shared
            if own:
                shutil.rmtree(cache, ignore_errors=True)
            elif kind != "cold" and n > filled:
                kind = f"{kind}*"
            res = run_once(inp, work / f"run-{kind}-{n}", cache, extra)
            if own:
                shutil.rmtree(cache, ignore_errors=True)
            else:
                filled = max(filled, n)
                marker.write_text(str(filled))
            results[kind, n] = res
            print(
                f"  {kind} {n}: {res['wall_s']:.1f} s, peak RSS {res['max_rss_mb']:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        ami_rows = []
        if ("warm", args.ami_size) in results and ("full", args.ami_size) in results:
            from sklearn.metrics import adjusted_mutual_info_score as ami

            s_leaf, s_truth = leaves_vs_truth(work / f"run-warm-{args.ami_size}", truth)
            f_leaf, f_truth = leaves_vs_truth(work / f"run-full-{args.ami_size}", truth)
            ami_rows = [
                ("sampled vs truth", ami(s_truth, s_leaf)),
                ("full vs truth", ami(f_truth, f_leaf)),
                ("sampled vs full", ami(f_leaf, s_leaf)),
            ]

    print(f"fit sample {args.fit_sample}; {os.cpu_count()} CPUs\n")
    print(
        "| rows | run | wall s | peak RSS MB | fit embed s | fit reduce s | fit cluster s | place s "
        "| place: embed s | place: kNN s | place: read+write s | leaves | fitted | placed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (kind, n), res in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        st = stage_times(res)
        c = res["counts"]
        rss = f"{res['max_rss_mb']:.0f}"
        if kind == "ray":
            rss += f" (workers {res['children_max_rss_mb']:.0f})"
        print(
            f"| {n:,} | {kind} | {res['wall_s']:.1f} | {rss} | {st['fit embed']:.1f} | "
            f"{st['fit reduce']:.1f} | {st['fit cluster']:.1f} | {st.get('place (all)', 0):.1f} | "
            f"{st.get('place: embed', 0):.1f} | "
            f"{st.get('place: kNN', 0):.1f} | {st.get('place: read+write', 0):.1f} | {c['leaves']} | "
            f"{c.get('fitted', c['accepted']):,} | {c.get('placed', 0):,} |"
        )
    print("\ngrowth exponents (time ~ N^k over the sizes run):\n")
    print("| run | stage | k |")
    print("|---|---|---|")
    for kind in ("cold", "warm", "full", "ray"):
        ns = sorted(n for (k, n) in results if k == kind)
        if len(ns) < 2:
            continue
        per = [stage_times(results[kind, n]) for n in ns]
        for stage in per[0]:
            k = exponent(ns, [p.get(stage, 0.0) for p in per])
            if k is not None:
                print(f"| {kind} | {stage} | {k:.2f} |")
        k = exponent(ns, [results[kind, n]["max_rss_mb"] for n in ns])
        if k is not None:
            print(f"| {kind} | peak RSS | {k:.2f} |")
    if ami_rows:
        print(f"\nleaf AMI at {args.ami_size:,} rows (same seed):\n")
        print("| comparison | AMI |")
        print("|---|---|")
        for name, value in ami_rows:
            print(f"| {name} | {value:.3f} |")
        print(f"\nsampled - full (vs truth): {ami_rows[0][1] - ami_rows[1][1]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
