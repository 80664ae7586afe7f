"""Comparing groups and models honestly: the floors of one shared taxonomy, node stability and diff.

Sections (``--section``, default all of this file's):

* ``planted``: one taxonomy per data set (seed 0); a column ``model`` where every row of one
  category (BailBench category, CLINC150 domain, WildChat-1880 topic, Banking77 intent: the
  first 10 by name) is model B and the other rows are split between A and B at random.
  ``compare --by model`` should find the nodes made of that category (>= 80% of their rows from
  it, >= 15 rows: a node of a handful of rows cannot reach significance whatever its make-up)
  significant and at most one node without it (< 10% of its rows from it). Nodes that mix it
  with others (10-80%) truly differ and are not counted. Repeated for each category with >= 60
  rows (Banking77: 40), ``--draws`` random splits each, at the top and leaf levels, for the
  default test (typical reference, hierarchical families) and the flat ones.
* ``stability-cost``: the warm BailBench run (``pipeline.run``, embeddings cached) with the default
  stability refits and with ``stability_refits = 0``, alternated, median of ``--repeats``; the
  ratio must stay within 1.5.
* ``calibration``: nodes of a seed-0 run, binned by stability, and how often each bin's nodes
  reappear in a run with another seed (best-match Jaccard >= 0.5 at the same level): the nodes
  with stability >= 0.8 should reappear >= 90% of the time.

* ``diff-seeds``: ``bailclio diff`` of the same rows clustered with two seeds (BailBench 0/1, 0/2,
  1/2; WildChat-1880 0/1; CLINC150 0/1), then of two random halves of BailBench (different rows of
  one distribution): nodes flagged significant at the top and leaf level (floor: 0 for the seeds).
* ``diff-planted``: B is BailBench with 70% of one category's rows removed, or with that
  category's rows twice, built with seed 1; A is the seed-0 run. The category's nodes are A's top
  nodes holding >= 25% of its rows (placed as diff places them): the change is found when one is
  significant in the planted direction (or, matched, only in A); other significant nodes are
  unrelated (floor: at most one). The diff sections' runs are built once (``bailclio run``) and
  kept under ``--cache`` (default /tmp/bailclio-compare/runs).

Usage: python bench/compare.py [--section planted|stability-cost|calibration|diff-seeds|diff-planted]
[--repeats 3] [--draws 4] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from bailclio.rundir import is_run_dir
from bailclio.taxonomy.diff import diff_runs, load_side, place_sides

ROOT = Path(__file__).resolve().parents[1]
BAILBENCH = ROOT / "data" / "bailbench.csv"
REAPPEAR = 0.5  # best-match Jaccard at which a node counts as found again
BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.01))


def build(out: Path, *, seed: int = 0, refits: int | None = None, source: Path = BAILBENCH):
    """A real run of ``source`` (BailBench) into ``out`` (the ``bailclio run`` path), its wall time."""
    from bailclio.config import Config
    from bailclio.pipeline import run

    cfg = Config(seed=seed)
    if refits is not None:
        cfg.cluster.stability_refits = refits
    t0 = time.perf_counter()
    result = run(source, out, cfg, force=True, progress=False)
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
# (reference, testing): the default first
VARIANTS = (("typical", "hierarchical"), ("typical", "flat"), ("all", "flat"))
# (data set, the column whose values are the categories, rows a category needs, categories at most)
PLANTED_SETS = (
    ("bailbench", "category", 60, 99),
    ("clinc150", "domain", 60, 99),
    ("wildchat", "topic", 60, 99),
    ("banking77", "category", 40, 10),  # 77 intents of 40 rows: the first 10 by name
)


def planted_case(
    run, conv, column: str, cat: str, level: int, draw: int, variant
) -> tuple[bool, int, int, int]:
    """One planted case: (floor held, made-of nodes found, made-of nodes, nodes without it flagged)."""
    from bailclio.taxonomy.compare import compare_groups

    coin = np.random.default_rng(draw).random(conv.height) < 0.5
    is_cat = (conv[column] == cat).fill_null(False).to_list()
    run.conversations = conv.with_columns(
        pl.Series("model", ["B" if c else ("A" if h else "B") for c, h in zip(is_cat, coin, strict=True)])
    )
    of_row = dict(zip(conv["conversation_id"], is_cat, strict=True))
    reference, testing = variant
    result = compare_groups(run, "model", level=level, reference=reference, testing=testing)
    frac: dict[str, list[bool]] = {}
    for cid, node in zip(run.assignments["conversation_id"], run.level_ids(level), strict=True):
        frac.setdefault(node, []).append(of_row[cid])
    share = {n: sum(v) / len(v) for n, v in frac.items()}
    big = [n for n in result.nodes if share.get(n.id, 0) >= MADE_OF and len(frac[n.id]) >= DETECTABLE]
    false = sum(n.significant for n in result.nodes if share.get(n.id, 0) < WITHOUT)
    found = sum(n.significant for n in big)
    return found == len(big) and false <= 1, found, len(big), false


def planted(work: Path, draws: int) -> None:
    from bailclio.rundir import CONVERSATIONS, load_run

    print("\n== planted: one category's rows all model B, the rest split A/B at random ==")
    print(
        f"per (category, level, random split): the floor holds when every node made of the category "
        f"(>= {MADE_OF:.0%} of its rows, >= {DETECTABLE} rows) is significant and at most one node "
        f"without it (< {WITHOUT:.0%}) is; {draws} random splits per category with >= 60 rows"
    )
    print(
        f"{'data':<11}{'reference':>10}{'testing':>14}{'level':>7}{'floor held':>12}"
        f"{'made-of found':>15}{'>1 false':>10}"
    )
    for name, column, min_rows, most in PLANTED_SETS:
        base = work / f"planted-{name}"
        if not (base / "manifest.json").exists():
            build(base, source=INPUTS[name])
        run = load_run(base)
        conv = pl.read_parquet(base / CONVERSATIONS)
        counts = conv[column].drop_nulls().value_counts()
        cats = sorted(counts.filter(pl.col("count") >= min_rows)[column].to_list())[:most]
        for variant in VARIANTS:
            for level in (0, run.taxonomy.depth - 1):
                cases = [
                    planted_case(run, conv, column, cat, level, draw, variant)
                    for cat in cats
                    for draw in range(draws)
                ]
                held = sum(c[0] for c in cases)
                found, made = sum(c[1] for c in cases), sum(c[2] for c in cases)
                over = sum(c[3] > 1 for c in cases)
                print(
                    f"{name:<11}{variant[0]:>10}{variant[1]:>14}{level:>7}"
                    f"{f'{held}/{len(cases)}':>12}{f'{found}/{made}':>15}{f'{over}/{len(cases)}':>10}"
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


# ---------------------------------------------------------------------------------------- diff
DIFF_CACHE = Path("/tmp/bailclio-compare/runs")
DATA = ROOT / "data"
SEED_PAIRS = (
    ("bailbench", 0, 1),
    ("bailbench", 0, 2),
    ("bailbench", 1, 2),
    ("wildchat", 0, 1),
    ("clinc150", 0, 1),
)
INPUTS = {
    "bailbench": DATA / "bailbench.csv",
    "wildchat": DATA / "wildchat_1880.jsonl",
    "clinc150": DATA / "clinc150.csv",
    "banking77": DATA / "banking77.csv",
}
LOSS = "Economic Harm"
GAIN = "Disinformation"


def diff_build(cache: Path, name: str, source: Path, seed: int) -> Path:
    out = cache / f"{name}-seed{seed}"
    if not is_run_dir(out):
        print(f"  building {out.name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [
            str(Path(sys.executable).with_name("bailclio")),
            "run",
            str(source),
            "--out",
            str(out),
            "--seed",
            str(seed),
        ]
        subprocess.run([*cmd, "--quiet", "--force"], check=True)
        print(f"  built {out.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def diff_inputs(cache: Path) -> dict[str, Path]:
    """BailBench with 70% of LOSS removed, with GAIN's rows twice, and two random halves."""
    data = pl.read_csv(DATA / "bailbench.csv").with_row_index("id")
    folder = cache / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    lost = data.filter(pl.col("category") == LOSS).sample(fraction=0.7, seed=0)["id"]
    doubled = data.filter(pl.col("category") == GAIN).with_columns(pl.col("id") + 100_000)
    shuffled = data.sample(fraction=1.0, shuffle=True, seed=0)
    half = shuffled.height // 2
    frames = {
        "bailbench-loss": data.filter(~pl.col("id").is_in(lost.implode())),
        "bailbench-gain": pl.concat([data, doubled]),
        "bailbench-half1": shuffled.head(half),
        "bailbench-half2": shuffled.slice(half),
    }
    paths = {}
    for name, frame in frames.items():
        path = folder / f"{name}.csv"
        if not path.exists():
            frame.write_csv(path)
        paths[name] = path
    return paths


def diff_flagged(a: Path, b: Path, level: int) -> tuple[int, int, int]:
    """Significant nodes on A's taxonomy, significant matched pairs, uncertain pairs."""
    r = diff_runs(a, b, level)
    return (
        len(r.significant),
        sum(m.significant for m in r.matched),
        sum(m.status == "uncertain" for m in r.matched),
    )


def diff_seeds(cache: Path) -> None:
    print("== diff, the same rows with two seeds (floor: 0 significant at top and leaf level)")
    print(
        f"{'data':<22} {'A':>5} {'B':>5} {'top':>4} {'leaf':>5}  pairs flagged top/leaf  uncertain top/leaf"
    )
    pairs = [(name, INPUTS[name], sa, sb) for name, sa, sb in SEED_PAIRS]
    halves = diff_inputs(cache)
    rows = []
    for name, source, sa, sb in pairs:
        rows.append((name, diff_build(cache, name, source, sa), diff_build(cache, name, source, sb), sa, sb))
    h1 = diff_build(cache, "bailbench-half1", halves["bailbench-half1"], 0)
    h2 = diff_build(cache, "bailbench-half2", halves["bailbench-half2"], 0)
    for name, a, b, sa, sb in rows + [("bailbench halves 1/2", h1, h2, 0, 0)]:
        leaf = load_side(a, 0).run.taxonomy.depth - 1
        top, leaf_n = diff_flagged(a, b, 0), diff_flagged(a, b, leaf)
        print(
            f"{name:<22} {sa:>5} {sb:>5} {top[0]:>4} {leaf_n[0]:>5}  {top[1]:>10}/{leaf_n[1]:<10} "
            f"{top[2]:>8}/{leaf_n[2]}"
        )
    print(
        "(halves: different rows of one distribution, both seed 0; "
        "expect about 0 at a 5% false discovery rate)"
    )


def diff_planted(cache: Path) -> None:
    print("\n== diff, planted changes at the top level (A: BailBench seed 0; B: planted, seed 1)")
    inputs = diff_inputs(cache)
    a = diff_build(cache, "bailbench", INPUTS["bailbench"], 0)
    for kind, category, sign in (("loss", LOSS, -1), ("gain", GAIN, +1)):
        b = diff_build(cache, f"bailbench-{kind}", inputs[f"bailbench-{kind}"], 1)
        side_a, side_b = load_side(a, 0), load_side(b, 0)
        leaves_a, _, _ = place_sides(side_a, side_b)
        cats = side_a.run.conversations["category"].to_list()
        tops = side_a.run.taxonomy.ids_at(0, leaves_a)
        in_cat = Counter(t for t, c in zip(tops, cats, strict=True) if c == category)
        total = sum(in_cat.values())
        its = {t for t, k in in_cat.items() if t is not None and k >= 0.25 * total}
        r = diff_runs(side_a, side_b, 0)
        found = [n for n in r.significant if n.id in its and (n.change > 0) == (sign > 0)]
        only_a = [x for x in r.only_in_a if x.id in its]
        unrelated = [n for n in r.significant if n.id not in its]
        ok = bool(found or (sign < 0 and only_a)) and len(unrelated) <= 1
        print(
            f"-- {kind}: {category} ({'70% of rows removed' if sign < 0 else 'rows twice'}): "
            f"{'PASS' if ok else 'FAIL'}"
        )
        for n in r.nodes or []:
            share_cat = in_cat.get(n.id, 0) / max(total, 1)
            mark = "*" if n.significant else " "
            tag = "its node" if n.id in its else ""
            print(
                f"   {n.id:<14} {100 * n.change:+6.1f} pp [{100 * n.change_ci_low:+5.1f},"
                f"{100 * n.change_ci_high:+5.1f}] q={n.q:.3g}{mark} "
                f"holds {100 * share_cat:4.0f}% of the category {tag}  {n.name[:40]}"
            )
        print(
            f"   found: {len(found)} of its nodes significant; unrelated significant nodes: {len(unrelated)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ("planted", "stability-cost", "calibration", "diff-seeds", "diff-planted", "diff-build")
    ap.add_argument("--section", choices=choices, action="append")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--draws", type=int, default=4, help="random A/B splits per planted category")
    ap.add_argument("--seeds", default="1", help="other seeds for calibration, comma-separated")
    ap.add_argument("--work", help="folder for the runs (default: a temporary one)")
    ap.add_argument("--cache", type=Path, default=DIFF_CACHE, help="folder of the diff sections' runs (kept)")
    args = ap.parse_args()
    sections = args.section or ["stability-cost", "calibration", "planted", "diff-seeds", "diff-planted"]
    args.cache.mkdir(parents=True, exist_ok=True)
    if "diff-build" in sections:  # only build the diff sections' cached runs
        inputs = diff_inputs(args.cache)
        for name, sa, sb in SEED_PAIRS:
            diff_build(args.cache, name, INPUTS[name], sa), diff_build(args.cache, name, INPUTS[name], sb)
        for name, seed in (
            ("bailbench-loss", 1),
            ("bailbench-gain", 1),
            ("bailbench-half1", 0),
            ("bailbench-half2", 0),
        ):
            diff_build(args.cache, name, inputs[name], seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "stability-cost" in sections:
            stability_cost(work, args.repeats)
        if "calibration" in sections:
            calibration(work, [int(s) for s in args.seeds.split(",")])
        if "planted" in sections:
            planted(work, args.draws)
    if "diff-seeds" in sections:
        diff_seeds(args.cache)
    if "diff-planted" in sections:
        diff_planted(args.cache)


if __name__ == "__main__":
    main()
