"""Score a taxonomy against known labels: clustering agreement per level and truth column.

For each taxonomy level (0 = top) and each truth column of the input (e.g. BailBench's
``category`` and ``subcategory``) :func:`evaluate_run` reports AMI, NMI, ARI, V-measure,
homogeneity, completeness, purity, Clio's reconstruction accuracy, the number of clusters and the
outlier share.

Outliers (rows HDBSCAN called noise; the run attaches them to their nearest leaf) can be scored
three ways (``outliers=``):

* ``"own"`` (the default, as a user sees them): every outlier's label is replaced by one extra
  cluster id at every level, so noise counts as a cluster of its own;
* ``"excluded"``: outlier rows are left out of the scoring;
* ``"attached"``: the labels as assigned (outliers in the leaf they were attached to).

Purity is the share of rows whose cluster's majority truth label is their own label, over the
scored partition. Reconstruction accuracy (Clio) asks whether the taxonomy can reconstruct every
row's label: each cluster of the level (as assigned, outliers attached) is mapped to the majority
truth label of its clustered (non-outlier) members, and then every scored row, outliers included,
is predicted by its cluster's label. With no outliers the two numbers coincide.

Example::

    >>> r = score_labels(["a", "a", "b", "b"], ["x", "x", "x", "y"])
    >>> r["purity"], r["n_clusters"]
    (0.75, 2)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bailclio.errors import UserError
from bailclio.taxonomy.model import level_stems

if TYPE_CHECKING:
    from bailclio.rundir import Run

OUTLIER_MODES = ("own", "excluded", "attached")
OUTLIER_LABEL = "__outlier__"
INTERNAL_COLUMNS = ("conversation_id", "text", "conversation", "source_line")
METRIC_KEYS = (
    "ami",
    "nmi",
    "ari",
    "v_measure",
    "homogeneity",
    "completeness",
    "purity",
    "reconstruction_accuracy",
)


# --------------------------------------------------------------------------- truth labels


def truth_values(run: Run, column: str) -> list[Any]:
    """The truth column's values, row-aligned with the run's assignments."""
    conv = run.conversations
    if column not in conv.columns or column in INTERNAL_COLUMNS:
        available = [c for c in conv.columns if c not in INTERNAL_COLUMNS]
        raise UserError(
            f"{run.path}: truth column '{column}' not found; available columns: "
            f"{', '.join(available) if available else '(none)'}"
        )
    ids = run.assignments["conversation_id"].to_list()
    conv_ids = conv["conversation_id"].to_list()
    values = conv[column].to_list()
    if conv_ids == ids:
        return values
    by_id = dict(zip(conv_ids, values, strict=True))
    return [by_id.get(i) for i in ids]


# --------------------------------------------------------------------------- scoring


def _codes(values: Sequence[Any]) -> np.ndarray:
    index: dict[Any, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _majority_map(clusters: np.ndarray, truth: np.ndarray, fit: np.ndarray) -> dict[int, int]:
    """Each cluster's most frequent truth code among ``fit`` rows (all its rows if none are);
    ties go to the label seen first."""
    out: dict[int, int] = {}
    for c in np.unique(clusters):
        members = clusters == c
        use = members & fit
        if not use.any():
            use = members
        counts = Counter(truth[use].tolist())
        best = max(counts.values())
        out[int(c)] = next(t for t in truth[use].tolist() if counts[t] == best)
    return out


def score_labels(
    pred: Sequence[Any],
    truth: Sequence[Any],
    *,
    attached: Sequence[Any] | None = None,
    core: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Agreement of a partition ``pred`` with ``truth`` (plain, row-aligned arrays).

    ``attached`` (default ``pred``) are the cluster labels reconstruction accuracy maps from, and
    ``core`` (default all rows) marks the rows whose truth labels define each cluster's majority;
    see the module docstring. Returns the metric keys plus ``n``, ``n_clusters`` and
    ``n_truth_labels``.
    """
    from sklearn import metrics

    p = _codes(list(pred))
    t = _codes(list(truth))
    n = len(p)
    if len(t) != n:
        raise ValueError(f"pred has {n} rows but truth has {len(t)}")
    a = p if attached is None else _codes(list(attached))
    if len(a) != n:
        raise ValueError(f"attached has {len(a)} rows, expected {n}")
    fit = np.ones(n, dtype=bool) if core is None else np.asarray(core, dtype=bool)
    if n == 0:
        return {**dict.fromkeys(METRIC_KEYS, float("nan")), "n": 0, "n_clusters": 0, "n_truth_labels": 0}
    h, c, v = metrics.homogeneity_completeness_v_measure(t, p)
    contingency = metrics.cluster.contingency_matrix(p, t, sparse=False)
    purity = float(contingency.max(axis=1).sum() / n)
    mapping = _majority_map(a, t, fit)
    recon = float(np.mean(np.array([mapping[int(x)] for x in a]) == t))
    return {
        "ami": float(metrics.adjusted_mutual_info_score(t, p)),
        "nmi": float(metrics.normalized_mutual_info_score(t, p)),
        "ari": float(metrics.adjusted_rand_score(t, p)),
        "v_measure": float(v),
        "homogeneity": float(h),
        "completeness": float(c),
        "purity": purity,
        "reconstruction_accuracy": recon,
        "n": n,
        "n_clusters": int(len(np.unique(p))),
        "n_truth_labels": int(len(np.unique(t))),
    }


def evaluate_run(
    run: Run,
    truth_columns: Sequence[str],
    *,
    exclude_outliers: bool = False,
    outliers: str | None = None,
    levels: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One dict per (level, truth column): level, level_name, truth, outliers (the mode), the
    metrics of :func:`score_labels`, ``outlier_share`` (share of the run's rows that are
    outliers) and ``n`` (rows scored).

    ``outliers`` is one of :data:`OUTLIER_MODES`; when not given it is ``"excluded"`` if
    ``exclude_outliers`` else ``"own"``. Rows whose truth value is missing are not scored.
    """
    mode = outliers or ("excluded" if exclude_outliers else "own")
    if mode not in OUTLIER_MODES:
        raise UserError(f"outliers mode must be one of {', '.join(OUTLIER_MODES)}, got '{mode}'")
    if not truth_columns:
        raise UserError("name at least one truth column")
    truths = {col: truth_values(run, col) for col in truth_columns}
    is_outlier = np.asarray(run.assignments["is_outlier"].to_list(), dtype=bool)
    n_rows = len(is_outlier)
    outlier_share = float(is_outlier.mean()) if n_rows else 0.0
    depth = run.taxonomy.depth
    names = level_stems(depth)
    results: list[dict[str, Any]] = []
    for level in levels if levels is not None else range(depth):
        if not 0 <= level < depth:
            raise UserError(f"level {level} does not exist (the taxonomy has levels 0..{depth - 1})")
        assigned = np.array(run.level_ids(level), dtype=object)
        for col, values in truths.items():
            truth = np.array(values, dtype=object)
            keep = np.array([v is not None for v in values], dtype=bool)
            if mode == "excluded":
                keep &= ~is_outlier
            pred = assigned.copy()
            if mode == "own":
                pred[is_outlier] = OUTLIER_LABEL
            scores = score_labels(
                pred[keep].tolist(),
                truth[keep].tolist(),
                attached=assigned[keep].tolist(),
                core=(~is_outlier)[keep].tolist(),
            )
            results.append(
                {
                    "level": level,
                    "level_name": names[level],
                    "truth": col,
                    "outliers": mode,
                    **{k: scores[k] for k in METRIC_KEYS},
                    "n_clusters": scores["n_clusters"],
                    "n_truth_labels": scores["n_truth_labels"],
                    "outlier_share": outlier_share,
                    "n": scores["n"],
                }
            )
    return results


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`evaluate_run` results."""
    head = (
        f"{'level':<10} {'truth':<14} {'outliers':<9} {'AMI':>6} {'NMI':>6} {'ARI':>6} {'V':>6} "
        f"{'homog':>6} {'compl':>6} {'purity':>6} {'recon':>6} {'clust':>6} {'outl%':>6} {'n':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{str(r['level']) + ':' + r['level_name']:<10} {r['truth'][:14]:<14} {r['outliers']:<9} "
            f"{r['ami']:6.3f} {r['nmi']:6.3f} {r['ari']:6.3f} {r['v_measure']:6.3f} "
            f"{r['homogeneity']:6.3f} {r['completeness']:6.3f} {r['purity']:6.3f} "
            f"{r['reconstruction_accuracy']:6.3f} {r['n_clusters']:>6} "
            f"{100 * r['outlier_share']:5.1f}% {r['n']:>6}"
        )
    return "\n".join(lines)
