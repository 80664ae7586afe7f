"""Compare two runs: how the shares of situations moved, on one partition, beyond run-to-run noise.

Two taxonomies clustered independently never cut the data the same way, even on the same rows
with another seed, so comparing each run's own node shares mistakes the partition moving for
change. ``diff A B`` therefore compares both sides on **A's taxonomy**: A's rows and B's rows are
placed in it by the same placement (:meth:`bailclio.Taxonomer.place`, the placement of ``assign``,
each row placed as if new: a reference row identical to it is left out), and for every node of the
chosen level (plus ``(unassigned)``, rows beyond the calibrated distance) the result gives both
shares with 95% Wilson intervals, the change (B - A) with its 95% Newcombe interval, a
test of the node's 2 x 2 table (chi-square, or Fisher's exact test where counts are small:
:func:`bailclio.stats.k_by_2_test`, as ``compare`` tests) and its Benjamini-Hochberg q-value across
the level's nodes; a node is ``significant`` when q <= 0.05. The same rows give the same
placements, so two runs of the same data with different seeds show no change at all.

The matching of B's own nodes to A's (:mod:`bailclio.taxonomy.matching`) is extra information:
each matched pair shows its own-taxonomy shares and change, the change of A's node on the shared
partition (``placed_change``) and ``partition_gap``, the part of the own-taxonomy change that is
only the partition moving (B's own node's share minus the share of B's rows placed in A's node:
the same rows, two partitions). A pair whose similarity is below ``uncertain_below`` is
``uncertain``: reported, never called a change. A pair is ``significant`` only when it is certain,
its A node changed significantly on the shared partition and its own change has the same sign.

Each side is a run directory (or a loaded :class:`~bailclio.rundir.Run`), or an assign output
file (``bailclio assign RUNDIR NEW`` writes ``RUNDIR/assign-<NEW>.parquet``): its taxonomy is then
its run's and its rows are the file's, already placed. An assign file of another run than A's has
no vectors to place, so only the matching is reported for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from bailclio.errors import UserError
from bailclio.stats import benjamini_hochberg, k_by_2_test, wilson_interval
from bailclio.taxonomer import Taxonomer
from bailclio.taxonomy.matching import DEFAULT_THRESHOLD, match_nodes, node_similarity, run_vectors
from bailclio.taxonomy.placement import DEFAULT_K, DEFAULT_QUANTILE

if TYPE_CHECKING:
    from bailclio.rundir import Run

__all__ = [
    "DEFAULT_THRESHOLD",
    "DiffResult",
    "diff_runs",
    "diff_sides",
    "load_side",
    "newcombe_interval",
    "wilson_interval",
]

UNASSIGNED = "(unassigned)"
UNCERTAIN_BELOW = 0.6  # a match less similar than this is reported as uncertain, not as a change
ALPHA = 0.05  # Benjamini-Hochberg false discovery rate across the nodes of a level


def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """95% interval of p_b - p_a from the two Wilson intervals (Newcombe's method 10)."""
    pa, pb = (k_a / n_a if n_a else 0.0), (k_b / n_b if n_b else 0.0)
    la, ua = wilson_interval(k_a, n_a)
    lb, ub = wilson_interval(k_b, n_b)
    d = pb - pa
    return d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)


@dataclass
class Share:
    count: int
    share: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, k: int, n: int) -> Share:
        lo, hi = wilson_interval(k, n)
        return cls(k, k / n if n else 0.0, lo, hi)


@dataclass
class NodeChange:
    """One node of A's taxonomy with both sides' rows placed in it."""

    id: str
    name: str
    a: Share
    b: Share
    change: float
    change_ci_low: float
    change_ci_high: float
    p: float
    q: float
    significant: bool
    test: str  # "chi-square", "fisher-exact" or "none" (bailclio.stats.k_by_2_test)


@dataclass
class Match:
    """A node of A matched with a node of B (each run's own taxonomy)."""

    a_id: str
    a_name: str
    b_id: str
    b_name: str
    similarity: float
    status: str  # "matched", or "uncertain" below ``uncertain_below``
    a: Share
    b: Share
    change: float
    change_ci_low: float
    change_ci_high: float
    placed_change: float | None
    placed_q: float | None
    partition_gap: float | None
    significant: bool


@dataclass
class Unmatched:
    id: str
    name: str
    count: int
    share: float
    ci_low: float
    ci_high: float
    best_similarity: float


@dataclass
class DiffResult:
    a: dict[str, Any]
    b: dict[str, Any]
    level: int
    threshold: float
    uncertain_below: float
    placement: dict[str, Any] | None  # how both sides were placed in A's taxonomy (None: not done)
    nodes: list[NodeChange] | None
    matched: list[Match]
    only_in_a: list[Unmatched]
    only_in_b: list[Unmatched]
    notes: list[str] = field(default_factory=list)

    @property
    def significant(self) -> list[NodeChange]:
        return [n for n in self.nodes or [] if n.significant]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape (docs/diff.md)."""
        return asdict(self) | {"significant_nodes": len(self.significant)}


@dataclass
class Side:
    source: str
    run: Run
    leaves: list[str | None]  # each row's leaf in the run's own taxonomy
    is_assign_file: bool = False
    vectors: np.ndarray | None = None  # row-aligned embeddings (run directories only)

    @property
    def n(self) -> int:
        return len(self.leaves)

    def counts(self, level: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.run.taxonomy.ids_at(level, self.leaves):
            key = node if node is not None else UNASSIGNED
            out[key] = out.get(key, 0) + 1
        return out


def load_side(path: str | Path | Run, level: int, *, curated: bool = True) -> Side:
    """A run directory, a loaded run or an assign output file, checked at ``level``."""
    from bailclio.rundir import Run, load_run
    from bailclio.taxonomy.assign_output import read_output_run

    if isinstance(path, Run):
        side = Side(str(path.path), path, path.assignments["leaf_id"].to_list())
    elif Path(path).is_file():
        p = Path(path)
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
        unknown = sorted({lf for lf in leaves if lf is not None and lf not in run.taxonomy.by_id})
        if unknown:
            raise UserError(f"{p}: leaf_id '{unknown[0]}' is not a node of the run's taxonomy")
        side = Side(str(p), run, leaves, is_assign_file=True)
    else:
        run = load_run(path, curated=curated)
        side = Side(str(path), run, run.assignments["leaf_id"].to_list())
    depth = side.run.taxonomy.depth
    if not 0 <= level < depth:
        raise UserError(f"{side.run.path}: level {level} does not exist (levels 0..{depth - 1})")
    return side


def _vectors(side: Side) -> np.ndarray:
    if side.vectors is None:
        side.vectors = run_vectors(side.run)
    return side.vectors


def _same_run(a: Run, b: Run) -> bool:
    return a.path.resolve() == b.path.resolve()


def _model_key(run: Run) -> str | None:
    return (run.manifest.get("embedding") or {}).get("model_key")


def place_sides(a: Side, b: Side) -> tuple[list[str | None], list[str | None], dict[str, Any]] | None:
    """Both sides' leaves in A's taxonomy (None where B's rows cannot be placed in it)."""
    if b.is_assign_file and not _same_run(b.run, a.run):
        return None
    if not b.is_assign_file and _model_key(a.run) != _model_key(b.run):
        raise UserError(
            f"{a.run.path} and {b.run.path} were embedded with different models "
            f"('{_model_key(a.run)}' and '{_model_key(b.run)}'); their rows cannot share one taxonomy"
        )
    tx = Taxonomer.from_run(a.run, progress=False)
    if not a.is_assign_file:
        tx.embeddings_ = _vectors(a)

    def placed(side: Side) -> list[str | None]:
        if side.is_assign_file:  # already placed in this run's taxonomy by assign
            return side.leaves
        return tx.place(_vectors(side), exclude_identical=True).leaf_ids

    leaves_a, leaves_b = placed(a), placed(b)
    cal = tx.calibration()
    info = {
        "taxonomy": str(a.run.path),
        "method": "knn",
        "k": DEFAULT_K,
        "quantile": DEFAULT_QUANTILE,
        "distance_threshold": cal.threshold,
        "expected_placed": cal.expected_placed,
    }
    return leaves_a, leaves_b, info


def node_changes(
    a: Side, leaves_a: list, leaves_b: list, level: int, alpha: float = ALPHA
) -> list[NodeChange]:
    """Every node of A's ``level`` (and ``(unassigned)`` where rows are) on the shared partition."""
    tax = a.run.taxonomy
    ids_a, ids_b = tax.ids_at(level, leaves_a), tax.ids_at(level, leaves_b)
    ca = _count([UNASSIGNED if x is None else x for x in ids_a])
    cb = _count([UNASSIGNED if x is None else x for x in ids_b])
    nodes = [n.id for n in tax.level(level)]
    if UNASSIGNED in ca or UNASSIGNED in cb:
        nodes.append(UNASSIGNED)
    na, nb = len(leaves_a), len(leaves_b)
    rows = []
    for node in nodes:
        ka, kb = ca.get(node, 0), cb.get(node, 0)
        test = k_by_2_test([[ka, na - ka], [kb, nb - kb]])
        rows.append((node, ka, kb, test.p, test.method))
    qs = benjamini_hochberg([r[3] for r in rows])
    out = []
    for (node, ka, kb, p, method), q in zip(rows, qs, strict=True):
        lo, hi = newcombe_interval(ka, na, kb, nb)
        name = UNASSIGNED if node == UNASSIGNED else tax.by_id[node].name
        change = (kb / nb if nb else 0.0) - (ka / na if na else 0.0)
        q = min(q, 1.0)
        sh_a, sh_b = Share.of(ka, na), Share.of(kb, nb)
        out.append(NodeChange(node, name, sh_a, sh_b, change, lo, hi, p, q, q <= alpha, method))
    out.sort(key=lambda x: (-abs(x.change), x.id))
    return out


def _count(ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in ids:
        out[x] = out.get(x, 0) + 1
    return out


def _level_ids(side: Side, level: int, counts: dict[str, int]) -> list[str]:
    return sorted(n.id for n in side.run.taxonomy.level(level) if n.id in counts or not side.is_assign_file)


def diff_runs(
    a: str | Path | Run | Side,
    b: str | Path | Run | Side,
    level: int = 0,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    uncertain_below: float = UNCERTAIN_BELOW,
    curated: bool = True,
) -> DiffResult:
    """Compare run (or assign file) ``b`` with ``a`` at ``level`` (see the module docstring)."""
    a = a if isinstance(a, Side) else load_side(a, level, curated=curated)
    b = b if isinstance(b, Side) else load_side(b, level, curated=curated)
    notes: list[str] = []
    placed = place_sides(a, b)
    nodes = None
    if placed is None:
        notes.append(
            f"B is an assign file of another run ({b.run.path}) and has no vectors: only the matching "
            "of the two taxonomies is reported; place B's input in A with `bailclio assign` to compare"
        )
        info = None
    else:
        leaves_a, leaves_b, info = placed
        nodes = node_changes(a, leaves_a, leaves_b, level)
        info["a_unassigned"] = sum(x is None for x in leaves_a)
        info["b_unassigned"] = sum(x is None for x in leaves_b)
    matched, only_a, only_b = _matches(a, b, level, threshold, uncertain_below, nodes, placed)
    return DiffResult(
        a={"source": a.source, "run": str(a.run.path), "rows": a.n},
        b={"source": b.source, "run": str(b.run.path), "rows": b.n},
        level=level,
        threshold=threshold,
        uncertain_below=uncertain_below,
        placement=info,
        nodes=nodes,
        matched=matched,
        only_in_a=only_a,
        only_in_b=only_b,
        notes=notes,
    )


def _matches(
    a: Side,
    b: Side,
    level: int,
    threshold: float,
    uncertain_below: float,
    nodes: list[NodeChange] | None,
    placed: tuple | None,
) -> tuple[list[Match], list[Unmatched], list[Unmatched]]:
    counts_a, counts_b = a.counts(level), b.counts(level)
    a_ids, b_ids = _level_ids(a, level, counts_a), _level_ids(b, level, counts_b)
    vectors = None
    if not _same_run(a.run, b.run):
        vectors = (run_vectors(a.run), run_vectors(b.run))
    sim = node_similarity(a.run, b.run, level, a_ids, b_ids, vectors).combined
    pairs = [(a_ids[r], b_ids[c], s) for r, c, s in match_nodes(sim, threshold)]
    if UNASSIGNED in counts_a or UNASSIGNED in counts_b:
        pairs.append((UNASSIGNED, UNASSIGNED, 1.0))
    by_node = {n.id: n for n in nodes or []}
    placed_b = (
        _count([UNASSIGNED if x is None else x for x in a.run.taxonomy.ids_at(level, placed[1])])
        if placed
        else {}
    )

    def name(side: Side, node: str) -> str:
        return UNASSIGNED if node == UNASSIGNED else side.run.taxonomy.by_id[node].name

    matched = []
    for ia, ib, s in pairs:
        ka, kb = counts_a.get(ia, 0), counts_b.get(ib, 0)
        lo, hi = newcombe_interval(ka, a.n, kb, b.n)
        change = (kb / b.n if b.n else 0.0) - (ka / a.n if a.n else 0.0)
        node = by_node.get(ia)
        status = "matched" if s >= uncertain_below else "uncertain"
        gap = None if node is None else (kb - placed_b.get(ia, 0)) / max(b.n, 1)
        significant = bool(
            status == "matched"
            and node is not None
            and node.significant
            and np.sign(change) == np.sign(node.change)
        )
        matched.append(
            Match(
                ia, name(a, ia), ib, name(b, ib), round(s, 4), status,
                Share.of(ka, a.n), Share.of(kb, b.n), change, lo, hi,
                None if node is None else node.change, None if node is None else node.q, gap, significant,
            )
        )  # fmt: skip
    matched.sort(key=lambda m: (m.status != "matched", -abs(m.change), m.a_id))
    used_a, used_b = {m.a_id for m in matched}, {m.b_id for m in matched}

    def unmatched(
        side: Side, ids: list[str], counts: dict[str, int], used: set[str], axis: int
    ) -> list[Unmatched]:
        out = []
        for i, node in enumerate(ids):
            if node in used:
                continue
            row = sim[i, :] if axis == 0 else sim[:, i]
            sh = Share.of(counts.get(node, 0), side.n)
            best = round(float(row.max()), 4) if row.size else 0.0
            out.append(Unmatched(node, name(side, node), sh.count, sh.share, sh.ci_low, sh.ci_high, best))
        return sorted(out, key=lambda x: -x.share)

    return matched, unmatched(a, a_ids, counts_a, used_a, 0), unmatched(b, b_ids, counts_b, used_b, 1)


def diff_sides(a: Side, b: Side, level: int, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """:func:`diff_runs` of two loaded sides, as the JSON-ready dict ``diff --json`` prints."""
    return diff_runs(a, b, level, threshold=threshold).to_dict()
