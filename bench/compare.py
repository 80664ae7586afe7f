"""Comparing groups and models honestly: the floors of one shared taxonomy, node stability and diff.

Sections (``--section``, default all of this file's):

* ``planted``: one BailBench taxonomy; a column ``model`` where every row of one BailBench category
  is model B and the other rows are split between A and B at random. ``compare --by model``
  should find the nodes made of that category (>= 80% of their rows from it) significant and at
  most one node without it (< 10% of its rows from it). Nodes that mix it with others (10-80%)
  truly differ between A and B and are counted apart. A node of a handful of rows cannot reach
  significance whatever its make-up, so nodes made of the category are also counted among those
  of >= 15 rows. Repeated for each category with >= 60 rows, at the top and leaf levels.
* ``stability-cost``: the warm BailBench run (``pipeline.run``, embeddings cached) with the default
  stability refits and with ``stability_refits = 0``, alternated, median of ``--repeats``; the
  ratio must stay within 1.5.
* ``calibration``: nodes of a seed-0 run, binned by stability, and how often each bin's nodes
  reappear in a run with another seed (best-match Jaccard >= 0.5 at the same level): the nodes
  with stability >= 0.8 should reappear >= 90% of the time.

Usage: python bench/compare.py [--section planted|stability-cost|calibration] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
BAILBENCH = ROOT / "data" / "bailbench.csv"
REAPPEAR = 0.5  # best-match Jaccard at which a node counts as found again
BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.01))


def build(out: Path, *, seed: int = 0, refits: int | None = None):
    """A real run of BailBench into ``out`` (the ``bailclio run`` path), its wall time."""
    from bailclio.config import Config
    from bailclio.pipeline import run

    cfg = Config(seed=seed)
    if refits is not None:
        cfg.cluster.stability_refits = refits
    t0 = time.perf_counter()
    result = run(BAILBENCH, out, cfg, force=True, progress=False)
    return result, time.perf_counter() - t0


def members(run, level: int) -> dict[str, set[str]]:
    ids = run.assignments["conversation_id"].to_list()
    out: dict[str, set[str]] = {}
    for cid, node in zip(ids, run.level_ids(level), strict=True):
        out.setdefault(node, set()).add(cid)
    return out


def best_jaccard(a: set[str], others: list[set[str]]) -> float:
    return max((len(a & b) / len(a | b) for b in others), default=0.0)


# ------------------------------------------------------------------------------------ planted
MADE_OF = 0.8  # a node whose rows are at least this share from the planted category is made of it
WITHOUT = 0.1  # a node with less than this share from it is a node without it
DETECTABLE = 15  # rows a node made of the category needs before a test can flag it reliably


def planted(work: Path) -> None:
    from bailclio.rundir import CONVERSATIONS, load_run
    from bailclio.taxonomy.compare import compare_groups

    base = work / "seed0"
    if not (base / "manifest.json").exists():
        build(base)
    run = load_run(base)
    conv = pl.read_parquet(base / CONVERSATIONS)
    cats = conv["category"].value_counts().filter(pl.col("count") >= 60)["category"].to_list()
    print("\n== planted: one category's rows all model B, the rest split A/B at random ==")
    print(
        f"nodes made of it: >= {MADE_OF:.0%} of their rows from it (found: significant; of those with "
        f">= {DETECTABLE} rows); without it: < {WITHOUT:.0%}; mixed nodes are neither"
    )
    head = f"{'category':<28}{'ref':>8}{'level':>6}{'made of':>9}{'found':>7}{'>=15 found':>12}"
    print(head + f"{'mixed flagged':>15}{'without flagged':>17}  floor")
    held = {"all": 0, "typical": 0}
    total = {"all": 0, "typical": 0}
    rng = np.random.default_rng(7)
    for cat in sorted(cats):
        coin = rng.random(conv.height) < 0.5
        is_cat = (conv["category"] == cat).to_list()
        model = ["B" if c else ("A" if h else "B") for c, h in zip(is_cat, coin, strict=True)]
        run.conversations = conv.with_columns(pl.Series("model", model))
        of_row = dict(zip(conv["conversation_id"], is_cat, strict=True))
        for level, reference in [
            (lv, ref) for lv in (0, run.taxonomy.depth - 1) for ref in ("all", "typical")
        ]:
            result = compare_groups(run, "model", level=level, reference=reference)
            frac: dict[str, list[bool]] = {}
            for cid, node in zip(run.assignments["conversation_id"], run.level_ids(level), strict=True):
                frac.setdefault(node, []).append(of_row[cid])
            share = {n: sum(v) / len(v) for n, v in frac.items()}
            made = [n for n in result.nodes if share.get(n.id, 0) >= MADE_OF]
            big = [n for n in made if len(frac[n.id]) >= DETECTABLE]
            without = [n for n in result.nodes if share.get(n.id, 0) < WITHOUT]
            mixed = [n for n in result.nodes if WITHOUT <= share.get(n.id, 0) < MADE_OF]
            found = sum(n.significant for n in made)
            found_big = sum(n.significant for n in big)
            false = sum(n.significant for n in without)
            ok = found_big == len(big) and false <= 1
            held[reference] += ok
            total[reference] += 1
            mixed_flagged = f"{sum(n.significant for n in mixed)}/{len(mixed)}"
            print(
                f"{cat[:27]:<28}{reference:>8}{level:>6}{len(made):>9}{found:>7}{f'{found_big}/{len(big)}':>12}"
                f"{mixed_flagged:>15}{false:>17}  {'ok' if ok else 'MISSED'}"
            )
    for reference in held:
        print(
            f"floor (every node made of it with >= {DETECTABLE} rows significant, at most one without "
            f"it) held in {held[reference]} of {total[reference]} (category, level) cases, "
            f"reference {reference}"
        )


# ----------------------------------------------------------------------------- stability cost
def stability_cost(work: Path, repeats: int) -> None:
    from bailclio.config import Config

    default = Config().cluster.stability_refits
    build(work / "warm", refits=0)  # embeddings cached, numba compiled
    times: dict[int, list[float]] = {0: [], default: []}
    stage: dict[int, list[float]] = {0: [], default: []}
    for r in range(repeats):
        for refits in (0, default) if r % 2 == 0 else (default, 0):
            result, seconds = build(work / f"cost-{refits}", refits=refits)
            times[refits].append(seconds)
            stage[refits].append(result.manifest["timings_s"].get("stability", 0.0))
    base, with_ = statistics.median(times[0]), statistics.median(times[default])
    print(f"\n== stability cost: warm BailBench run (1,630 rows), median of {repeats} ==")
    print(f"stability_refits=0       : {base:6.1f} s  {[round(t, 1) for t in times[0]]}")
    print(f"stability_refits={default:<8}: {with_:6.1f} s  {[round(t, 1) for t in times[default]]}")
    print(f"stability stage median   : {statistics.median(stage[default]):6.1f} s")
    print(f"ratio {with_ / base:.2f} (floor: <= 1.5)  {'ok' if with_ / base <= 1.5 else 'ABOVE'}")
    # The totals also move with the load on the machine (UMAP dominates); the stage's own time
    # over the baseline's total is the ratio the refits alone cause.
    stage_ratio = 1 + statistics.median(stage[default]) / base
    print(f"ratio from the stage's own time: 1 + stability / baseline total = {stage_ratio:.2f}")


# -------------------------------------------------------------------------------- calibration
def calibration(work: Path, seeds: list[int]) -> None:
    from bailclio.rundir import load_run
    from bailclio.stats import wilson_interval

    runs = {}
    for seed in [0, *seeds]:
        path = work / f"seed{seed}"
        if not (path / "manifest.json").exists():
            build(path, seed=seed)
        runs[seed] = load_run(path)
    ref = runs[0]
    rows = []  # (stability, reappears same level, reappears any level)
    for other in seeds:
        run = runs[other]
        all_levels = [s for lv in range(run.taxonomy.depth) for s in members(run, lv).values()]
        for level in range(ref.taxonomy.depth):
            mine = members(ref, level)
            theirs = list(members(run, min(level, run.taxonomy.depth - 1)).values())
            if level == ref.taxonomy.depth - 1:
                theirs = list(members(run, run.taxonomy.depth - 1).values())
            for node_id, rows_of in mine.items():
                stab = ref.taxonomy.by_id[node_id].extra.get("stability")
                if stab is None:
                    print(f"node {node_id} has no stability", file=sys.stderr)
                    continue
                rows.append((stab, best_jaccard(rows_of, theirs), best_jaccard(rows_of, all_levels)))
    print(f"\n== calibration: seed-0 nodes vs seeds {seeds} (reappears: best-match Jaccard >= {REAPPEAR}) ==")
    print(f"{'stability':<12}{'nodes':>7}{'same level':>22}{'any level':>22}")
    for lo, hi in BINS:
        sel = [r for r in rows if lo <= r[0] < hi]
        n = len(sel)
        cells = ""
        for col in (1, 2):
            k = sum(1 for r in sel if r[col] >= REAPPEAR)
            a, b = wilson_interval(k, n)
            cells += f"{(f'{k / n:.0%} [{a:.0%}-{b:.0%}]' if n else '-'):>22}"
        print(f"[{lo:.1f}, {min(hi, 1.0):.1f}]{'':<2}{n:>7}{cells}")
    top = [r for r in rows if r[0] >= 0.8]
    rate = sum(1 for r in top if r[1] >= REAPPEAR) / max(len(top), 1)
    verdict = "ok" if rate >= 0.9 else "BELOW"
    print(f"stability >= 0.8 reappear (same level): {rate:.0%} (floor: >= 90%)  {verdict}")
    rho = np.corrcoef([r[0] for r in rows], [r[1] for r in rows])[0, 1] if len(rows) > 2 else float("nan")
    print(f"correlation of stability with the best-match Jaccard: {rho:.2f} over {len(rows)} nodes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=("planted", "stability-cost", "calibration"), action="append")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", default="1", help="other seeds for calibration, comma-separated")
    ap.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    sections = args.section or ["stability-cost", "calibration", "planted"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "stability-cost" in sections:
            stability_cost(work, args.repeats)
        if "calibration" in sections:
            calibration(work, [int(s) for s in args.seeds.split(",")])
        if "planted" in sections:
            planted(work)


if __name__ == "__main__":
    main()
