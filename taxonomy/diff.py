"""Compare two taxonomies: which categories match, how their shares moved, what is new or gone.

Each side is a run directory, or an assign output file (``bailclio assign RUNDIR NEW`` writes
``RUNDIR/assign-<NEW>.parquet``): the side's taxonomy is then that run's, and its shares are
counted over the assign file's rows (unassigned rows count as ``(unassigned)``). The run of an
assign file is the one named in the Parquet file's metadata, else the run directory holding the
file.

Nodes of the chosen level are matched one-to-one (Hungarian algorithm) on a combined similarity:
``0.8 * cosine(centroids) + 0.2 * jaccard(name words)``. Centroids are the mean embedding
(``embeddings.npy``) of each node's rows, after removing the mean of both runs' vectors so the
shared "request to an assistant" direction does not make every pair look alike. Pairs below the
threshold (default 0.35) are not matches: those nodes are reported as only in A or only in B.
Two sides built on the same run directory match node by node.

For each matched pair: the share of rows in A and in B with 95% Wilson intervals, the change
(B - A) with its 95% Newcombe interval (hybrid Wilson score), and whether that interval excludes 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.stats import wilson_interval

if TYPE_CHECKING:
    from bailclio.rundir import Run

UNASSIGNED = "(unassigned)"
CENTROID_WEIGHT = 0.8
DEFAULT_THRESHOLD = 0.35


def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """95% interval of p_b - p_a from the two Wilson intervals (Newcombe's method 10)."""
    pa, pb = (k_a / n_a if n_a else 0.0), (k_b / n_b if n_b else 0.0)
    la, ua = wilson_interval(k_a, n_a)
    lb, ub = wilson_interval(k_b, n_b)
    d = pb - pa
    return d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)


@dataclass
class Side:
    source: str
    run: Run
    counts: dict[str, int]  # node id (or UNASSIGNED) -> rows
    n: int
    is_assign_file: bool = False
    centroids: dict[str, np.ndarray] = field(default_factory=dict)


def load_side(path: str | Path, level: int, *, curated: bool = True) -> Side:
    """A run directory or an assign output file, counted at ``level``."""
    from bailclio.rundir import load_run
    from bailclio.taxonomy.assign import read_output_run

    p = Path(path)
    if p.is_file():
        run_dir = read_output_run(p)
        if run_dir is None:
            raise UserError(
                f"{p}: not an assign output of a run (no run named in its metadata and its folder "
                "is not a run directory)"
            )
        run = load_run(run_dir, curated=curated)
        try:
            frame = pl.read_parquet(p) if p.suffix.lower() == ".parquet" else pl.read_csv(p)
        except Exception as exc:
            raise UserError(f"{p}: cannot read: {exc}".splitlines()[0]) from exc
        if "leaf_id" not in frame.columns:
            raise UserError(f"{p}: missing column 'leaf_id' (not an assign output)")
        leaves = frame["leaf_id"].cast(pl.String).to_list()
        is_file = True
    else:
        run = load_run(p, curated=curated)
        leaves = run.assignments["leaf_id"].to_list()
        is_file = False
    _check_level(run, level)
    if is_file:
        unknown = sorted({lf for lf in leaves if lf is not None and lf not in run.taxonomy.by_id})
        if unknown:
            raise UserError(f"{p}: leaf_id '{unknown[0]}' is not a node of the run's taxonomy")
        ids = run.taxonomy.ids_at(level, leaves)
    else:
        ids = run.level_ids(level)
    counts: dict[str, int] = {}
    for node in ids:
        key = node if node is not None else UNASSIGNED
        counts[key] = counts.get(key, 0) + 1
    return Side(str(p), run, counts, len(leaves), is_file)


def _check_level(run: Run, level: int) -> None:
    depth = run.taxonomy.depth
    if not 0 <= level < depth:
        raise UserError(f"{run.path}: level {level} does not exist (levels 0..{depth - 1})")


def _run_vectors(run: Run) -> np.ndarray:
    from bailclio import rundir

    path = run.file(rundir.EMBEDDINGS)
    if not path.exists():
        raise UserError(f"{run.path}: {rundir.EMBEDDINGS} is missing; rerun `bailclio run` to rebuild it")
    X = np.load(path).astype(np.float32)
    if X.shape[0] != run.assignments.height:
        raise UserError(f"{path}: {X.shape[0]} vectors for {run.assignments.height} conversations")
    return X


def _centroids(run: Run, X: np.ndarray, mean: np.ndarray, level: int) -> dict[str, np.ndarray]:
    ids = np.array(run.level_ids(level), dtype=object)
    Xc = X - mean
    Xc /= np.maximum(np.linalg.norm(Xc, axis=1, keepdims=True), 1e-9)
    out = {}
    for node in sorted(set(ids.tolist())):
        c = Xc[ids == node].mean(axis=0)
        out[node] = c / max(float(np.linalg.norm(c)), 1e-9)
    return out


def name_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _node_words(run: Run, node_id: str) -> set[str]:
    node = run.taxonomy.by_id[node_id]
    return name_words(node.name)


def similarity(a: Side, b: Side, level: int) -> tuple[list[str], list[str], np.ndarray]:
    """Node ids of A and B at ``level`` and their combined similarity matrix."""
    a_ids = sorted(n.id for n in a.run.taxonomy.level(level) if n.id in a.counts or not a.is_assign_file)
    b_ids = sorted(n.id for n in b.run.taxonomy.level(level) if n.id in b.counts or not b.is_assign_file)
    return a_ids, b_ids, node_similarity(a.run, b.run, level, a_ids, b_ids).combined


@dataclass
class NodeSimilarity:
    """Similarities of nodes ``a_ids`` (rows) and ``b_ids`` (columns): ``combined`` is what
    matching uses, ``centroid`` the centred cosine, ``names`` the name-word overlap."""

    combined: np.ndarray
    centroid: np.ndarray
    names: np.ndarray


def node_similarity(run_a: Run, run_b: Run, level: int, a_ids: list[str], b_ids: list[str]) -> NodeSimilarity:
    """The one node similarity of bailclio (``diff`` and the explorer's Compare):
    ``0.8 * cosine(centred centroids) + 0.2 * jaccard(name words)``; a run with itself matches
    node by node."""
    shape = (len(a_ids), len(b_ids))
    if run_a.path.resolve() == run_b.path.resolve():
        same = np.array([[1.0 if x == y else 0.0 for y in b_ids] for x in a_ids], dtype=np.float64)
        same = same.reshape(shape)
        return NodeSimilarity(same, same.copy(), same.copy())
    Xa, Xb = _run_vectors(run_a), _run_vectors(run_b)
    if Xa.shape[1] != Xb.shape[1]:
        raise UserError(
            f"{run_a.path} and {run_b.path} were embedded with different models "
            f"(dimensions {Xa.shape[1]} and {Xb.shape[1]}); their taxonomies cannot be matched"
        )
    mean = np.concatenate([Xa, Xb]).mean(axis=0)
    ca, cb = _centroids(run_a, Xa, mean, level), _centroids(run_b, Xb, mean, level)
    A = np.stack([ca[i] for i in a_ids]) if a_ids else np.zeros((0, Xa.shape[1]))
    B = np.stack([cb[i] for i in b_ids]) if b_ids else np.zeros((0, Xb.shape[1]))
    cos = (A @ B.T).astype(np.float64).reshape(shape)
    words_a = [_node_words(run_a, i) for i in a_ids]
    words_b = [_node_words(run_b, i) for i in b_ids]
    names = np.array([[_jaccard(x, y) for y in words_b] for x in words_a], dtype=np.float64).reshape(shape)
    return NodeSimilarity(CENTROID_WEIGHT * cos + (1 - CENTROID_WEIGHT) * names, cos, names)


def match_nodes(sim: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one matches maximising total similarity, keeping pairs at or above ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    if sim.size == 0:
        return []
    rows, cols = linear_sum_assignment(-sim)
    return [
        (int(r), int(c), float(sim[r, c])) for r, c in zip(rows, cols, strict=True) if sim[r, c] >= threshold
    ]


def _share(k: int, n: int) -> dict[str, float]:
    lo, hi = wilson_interval(k, n)
    return {"count": k, "share": k / n if n else 0.0, "ci_low": lo, "ci_high": hi}


def diff_sides(a: Side, b: Side, level: int, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (see the module docstring)."""
    a_ids, b_ids, sim = similarity(a, b, level)
    pairs = match_nodes(sim, threshold)
    name_a = {i: a.run.taxonomy.by_id[i].name for i in a_ids}
    name_b = {i: b.run.taxonomy.by_id[i].name for i in b_ids}
    matched = []
    for r, c, s in pairs:
        ia, ib = a_ids[r], b_ids[c]
        ka, kb = a.counts.get(ia, 0), b.counts.get(ib, 0)
        lo, hi = newcombe_interval(ka, a.n, kb, b.n)
        matched.append(
            {
                "a_id": ia,
                "a_name": name_a[ia],
                "b_id": ib,
                "b_name": name_b[ib],
                "similarity": round(s, 4),
                "a": _share(ka, a.n),
                "b": _share(kb, b.n),
                "change": (kb / b.n if b.n else 0.0) - (ka / a.n if a.n else 0.0),
                "change_ci_low": lo,
                "change_ci_high": hi,
                "significant": lo > 0 or hi < 0,
            }
        )
    if UNASSIGNED in a.counts or UNASSIGNED in b.counts:
        ka, kb = a.counts.get(UNASSIGNED, 0), b.counts.get(UNASSIGNED, 0)
        lo, hi = newcombe_interval(ka, a.n, kb, b.n)
        matched.append(
            {
                "a_id": UNASSIGNED,
                "a_name": UNASSIGNED,
                "b_id": UNASSIGNED,
                "b_name": UNASSIGNED,
                "similarity": 1.0,
                "a": _share(ka, a.n),
                "b": _share(kb, b.n),
                "change": (kb / b.n if b.n else 0.0) - (ka / a.n if a.n else 0.0),
                "change_ci_low": lo,
                "change_ci_high": hi,
                "significant": lo > 0 or hi < 0,
            }
        )
    matched.sort(key=lambda m: (-abs(m["change"]), m["a_id"]))
    used_a = {a_ids[r] for r, _, _ in pairs}
    used_b = {b_ids[c] for _, c, _ in pairs}

    def best(i: int, axis: int) -> float:
        row = sim[i, :] if axis == 0 else sim[:, i]
        return float(row.max()) if row.size else 0.0

    only_a = [
        {
            "id": i,
            "name": name_a[i],
            **_share(a.counts.get(i, 0), a.n),
            "best_similarity": round(best(r, 0), 4),
        }
        for r, i in enumerate(a_ids)
        if i not in used_a
    ]
    only_b = [
        {
            "id": i,
            "name": name_b[i],
            **_share(b.counts.get(i, 0), b.n),
            "best_similarity": round(best(c, 1), 4),
        }
        for c, i in enumerate(b_ids)
        if i not in used_b
    ]
    only_a.sort(key=lambda x: -x["share"])
    only_b.sort(key=lambda x: -x["share"])
    return {
        "a": {"source": a.source, "run": str(a.run.path), "rows": a.n},
        "b": {"source": b.source, "run": str(b.run.path), "rows": b.n},
        "level": level,
        "threshold": threshold,
        "matched": matched,
        "only_in_a": only_a,
        "only_in_b": only_b,
    }


def format_table(result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    ids = [m[k] for m in result["matched"] for k in ("a_id", "b_id")]
    ids += [x["id"] for key in ("only_in_a", "only_in_b") for x in result[key]]
    w = max([6, *(len(i) for i in ids if i != UNASSIGNED)])
    lines = [
        f"A: {a['source']} ({a['rows']} rows)    B: {b['source']} ({b['rows']} rows)    "
        f"level {result['level']}",
        "",
        f"{'A':<{w}} {'B':<{w}} {'sim':>5} {'share A [95% CI]':>22} {'share B [95% CI]':>22} "
        f"{'change [95% CI]':>24}  name (A -> B)",
    ]

    def pct(s: dict[str, float]) -> str:
        return f"{100 * s['share']:5.1f}% [{100 * s['ci_low']:4.1f},{100 * s['ci_high']:5.1f}]"

    for m in result["matched"]:
        star = "*" if m["significant"] else " "
        lo, hi = 100 * m["change_ci_low"], 100 * m["change_ci_high"]
        change = f"{100 * m['change']:+6.1f} [{lo:+5.1f},{hi:+5.1f}]{star}"
        names = m["a_name"] if m["a_name"] == m["b_name"] else f"{m['a_name']} -> {m['b_name']}"
        lines.append(
            f"{m['a_id']:<{w}.{w}} {m['b_id']:<{w}.{w}} {m['similarity']:5.2f} "
            f"{pct(m['a']):>22} {pct(m['b']):>22} {change:>24}  {names}"
        )
    for title, key in (("only in A", "only_in_a"), ("only in B", "only_in_b")):
        lines.append(f"\n{title}: {len(result[key])}")
        for x in result[key]:
            lines.append(
                f"  {x['id']:<{w}} {pct(x):>22}  best similarity {x['best_similarity']:.2f}  {x['name']}"
            )
    lines.append("\n* the change's 95% interval excludes 0")
    return "\n".join(lines)


def plot(result: dict[str, Any], out: str | Path, top: int = 15) -> Path:
    """A bar chart of the largest share changes (matched, only-in-A as losses, only-in-B as gains)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [
        (m["b_name"] if m["a_name"] == m["b_name"] else f"{m['a_name']} -> {m['b_name']}", m["change"])
        for m in result["matched"]
    ]
    items += [(f"{x['name']} (only A)", -x["share"]) for x in result["only_in_a"]]
    items += [(f"{x['name']} (only B)", x["share"]) for x in result["only_in_b"]]
    items = sorted(items, key=lambda kv: -abs(kv[1]))[:top][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.4 * max(len(items), 3) + 1.2))
    ax.barh(
        [name[:60] for name, _ in items],
        [100 * v for _, v in items],
        color=["#c0392b" if v < 0 else "#2e86c1" for _, v in items],
    )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change in share of conversations (percentage points, B - A)")
    ax.set_title(f"Largest changes at level {result['level']}")
    fig.tight_layout()
    p = Path(out)
    fmt = p.suffix.lstrip(".").lower() or "png"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_file(p, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    except ValueError as exc:  # a format matplotlib cannot write
        raise UserError(f"{p}: cannot write a plot: {exc}".splitlines()[0]) from exc
    finally:
        plt.close(fig)
    return p
