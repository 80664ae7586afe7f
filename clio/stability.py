"""How reliably each node of a taxonomy is found again when its clustering is refitted.

Method (clusterboot-style subsampling, Hennig 2007): draw ``refits`` random subsets of the
distinct points (``fraction`` of them, without replacement: duplicates would give HDBSCAN
zero-distance cores), refit the clusterer on the subset's points in the **already reduced**
space, rebuild the hierarchy over the refit's leaves (with the Ward builder, pinned to the
original node count per level, so level ``d`` of the refit is comparable with level ``d``), and
for every original node take the best Jaccard index between its members in the subset and any
refitted node of the same level (any level, when the refit's depth differs). A node's
``stability`` is the median over the refits of that best match: 1 means the same set of points
came back every time, near 0 that it dissolved.

Only the cheap part is refitted: the embedding and the reduction (UMAP) are not, so this measures
the clustering's and the hierarchy's sensitivity to the sample, not UMAP's to its seed.
``bench/compare.py`` measures how well it predicts a node's reappearance in a run with another seed.

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> space = np.vstack([rng.normal(c, 0.2, size=(40, 2)) for c in (0, 6)])
    >>> groups = [np.repeat([0, 1], 40)]
    >>> def refit(idx):  # a clusterer that splits at x = 3
    ...     return [(space[idx, 0] > 3).astype(int)]
    >>> [float(s) for s in node_stability(groups, refit, refits=5, seed=0)[0]]
    [1.0, 1.0]
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("bailclio")

DEFAULT_REFITS = 10
FRACTION = 0.8


def best_match_jaccard(original: np.ndarray, refit: np.ndarray) -> np.ndarray:
    """For each group of ``original`` (labels 0..n-1 over the same points as ``refit``), the
    largest Jaccard index with any group of ``refit``; NaN for a group with no point here.

    >>> best_match_jaccard(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 7])).round(3).tolist()
    [0.667, 0.5]
    """
    original = np.asarray(original, dtype=np.int64)
    _, refit_idx = np.unique(np.asarray(refit), return_inverse=True)
    n_orig = int(original.max()) + 1 if len(original) else 0
    n_refit = int(refit_idx.max()) + 1 if len(refit_idx) else 0
    both = np.zeros((n_orig, n_refit))
    np.add.at(both, (original, refit_idx), 1.0)
    a = both.sum(axis=1, keepdims=True)
    b = both.sum(axis=0, keepdims=True)
    union = a + b - both
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, both / union, 0.0)
    best = jac.max(axis=1) if n_refit else np.zeros(n_orig)
    best[a[:, 0] == 0] = np.nan
    return best


def node_stability(
    groups: Sequence[np.ndarray],
    refit: Callable[[np.ndarray], Sequence[np.ndarray]],
    *,
    refits: int = DEFAULT_REFITS,
    seed: int = 0,
    fraction: float = FRACTION,
) -> list[np.ndarray] | None:
    """Per level (top first), each node's stability in [0, 1] (module docstring). ``groups[d]``
    labels every point with its node at level ``d``; ``refit(indices)`` clusters the points at
    ``indices`` afresh and returns their labels per level, top first. A refit that raises is left
    out with a warning; when every refit fails there is no stability (None)."""
    n = len(groups[-1])
    rng = np.random.default_rng(seed)
    take = max(2, int(round(fraction * n)))
    scores: list[list[np.ndarray]] = [[] for _ in groups]
    failed: list[str] = []
    for _ in range(refits):
        idx = np.sort(rng.choice(n, size=min(take, n), replace=False))
        try:
            new = [np.asarray(g) for g in refit(idx)]
        except Exception as exc:  # a stage that cannot refit a subset must not sink the fit
            failed.append(f"{type(exc).__name__}: {exc}")
            continue
        for level, labels in enumerate(groups):
            sub = np.asarray(labels)[idx]
            if len(new) == len(groups):
                best = best_match_jaccard(sub, new[level])
            else:  # another depth: the best match at any level
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a node absent from the subset
                    best = np.nanmax([best_match_jaccard(sub, g) for g in new], axis=0)
            best = np.concatenate([best, np.full(int(np.max(labels)) + 1 - len(best), np.nan)])
            scores[level].append(best)
    if failed:
        log.warning(f"[bailclio] stability: {len(failed)} of {refits} refits failed ({failed[0]})")
    if refits and len(failed) == refits:
        return None
    out = []
    for level, labels in enumerate(groups):
        if not scores[level]:
            out.append(np.zeros(int(np.max(labels)) + 1))
            continue
        stacked = np.vstack(scores[level])
        seen = ~np.isnan(stacked).all(axis=0)
        med = np.zeros(stacked.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med[seen] = np.nanmedian(stacked[:, seen], axis=0)  # never drawn in any refit: 0
        out.append(np.clip(med, 0.0, 1.0))
    return out


def pinned_builder(builder: Any, sizes: Sequence[int]) -> Any:
    """``builder`` with its node counts above the leaves pinned to ``sizes`` (top first) where its
    config takes them (the Ward builder's does); otherwise ``builder`` itself."""
    config = getattr(builder, "config", None)
    if config is None or not hasattr(config, "sizes") or len(sizes) < 1:
        return builder
    try:
        update = {"sizes": list(sizes), "levels": None, "n_top": None, "n_mid": None}
        return type(builder)(config.model_copy(update=update))
    except Exception:  # a builder this cannot be rebuilt from its config: used as it is
        return builder


def refit_function(
    space: np.ndarray, vectors: np.ndarray | None, clusterer: Any, builder: Any, sizes: Sequence[int]
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``refit(indices)`` for :func:`node_stability`: the clusterer on those points of ``space``,
    then the hierarchy (pinned to ``sizes``, the original node counts, top first) over its leaves."""
    pinned = pinned_builder(builder, sizes[:-1])
    try:
        takes_vectors = "vectors" in inspect.signature(pinned.build).parameters
    except (TypeError, ValueError):
        takes_vectors = False

    def refit(idx: np.ndarray) -> list[np.ndarray]:
        sub = space[idx]
        labels = np.asarray(clusterer.cluster(sub).labels).copy()
        if (labels < 0).any():  # unattached noise is one leaf of its own, as in the fit
            labels[labels < 0] = labels.max() + 1
        if labels.max() < 1:
            return [labels]
        if takes_vectors and vectors is not None:
            hier = pinned.build(sub, labels, vectors=vectors[idx])
        else:
            hier = pinned.build(sub, labels)
        return list(hier.groups(labels))

    return refit
