"""How `bailclio run` time grows with N: 1.6k, 10k and 50k rows.

    python bench/scale.py [--sizes 1630 10000 50000] [--repeats 1]

Larger inputs are BailBench and WildChat-1880 texts repeated with small perturbations (a word
dropped, two words swapped, a short suffix), so every row is a distinct text that must be
embedded. Each size runs `bailclio run` as a fresh process twice: cold (empty embedding cache)
and warm (embeddings cached). Prints whole-process wall time, the per-stage timings from the
manifest, peak memory, and the growth ratio against the smallest size run in the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = ["", " please", " now", " in detail", " quickly", " for a story", " step by step", " again"]

CHILD = r"""
import json, resource, sys
from bailclio.cli import main
rc = main(sys.argv[1:-1])
json.dump({"rc": rc, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
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


def make_input(n: int, path: Path, seed: int = 0) -> Path:
    base = pl.read_csv(ROOT / "data" / "bailbench.csv")["content"].to_list()
    base += [json.loads(line)["text"] for line in (ROOT / "data" / "wildchat_1880.jsonl").open()]
    rng = random.Random(seed)
    seen: set[str] = set()
    texts: list[str] = []
    for t in base[:n]:
        seen.add(t)
        texts.append(t)
    while len(texts) < n:
        t = perturb(rng.choice(base), rng)
        if t not in seen:
            seen.add(t)
            texts.append(t)
    pl.DataFrame({"text": texts}).write_parquet(path)
    return path


def run_once(inp: Path, out: Path, cache: Path) -> dict:
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
        [sys.executable, "-c", CHILD, "run", str(inp), "--out", str(out), "--force", "--quiet", str(stats)],
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
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1630, 10000, 50000])
    ap.add_argument("--repeats", type=int, default=1, help="warm reruns per size (median reported)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bailclio-scale-") as tmp:
        work = Path(tmp)
        for n in args.sizes:
            inp = make_input(n, work / f"in-{n}.parquet")
            cache = work / f"cache-{n}"
            cold = run_once(inp, work / f"run-{n}", cache)
            warm = [run_once(inp, work / f"run-{n}", cache) for _ in range(args.repeats)]
            warm_s = statistics.median(w["wall_s"] for w in warm)
            rows.append((n, cold, warm_s, warm[0]))
            print(f"  {n}: cold {cold['wall_s']:.1f} s, warm {warm_s:.1f} s", file=sys.stderr, flush=True)
    base_n, base_cold, base_warm, _ = rows[0]
    print(
        "| rows | cold s | warm s | cold x | warm x | embed s | reduce s | cluster s | leaves | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, cold, warm_s, warm in rows:
        st = cold["stages"]
        print(
            f"| {n} | {cold['wall_s']:.1f} | {warm_s:.1f} | {cold['wall_s'] / base_cold['wall_s']:.1f} | "
            f"{warm_s / base_warm:.1f} | {st['embed']:.1f} | {warm['stages']['reduce']:.1f} | "
            f"{warm['stages']['cluster']:.1f} | {cold['counts']['leaves']} | {cold['max_rss_mb']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
