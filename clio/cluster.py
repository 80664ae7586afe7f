"""HDBSCAN leaf clusters over the reduced space, with noise points flagged, not hidden.

Points HDBSCAN calls noise get ``is_outlier = True``; by default they are also attached to the
cluster that wins a distance-weighted vote among their nearest clustered neighbours, so every
row lands in a leaf. ``min_cluster_size`` defaults from N (``max(5, round(sqrt(N) / 8))``).

Example::

    >>> import numpy as np
    >>> from bailclio.config import ClusterConfig
    >>> rng = np.random.default_rng(0)
    >>> Z = np.vstack([rng.normal(c, 0.1, size=(30, 2)) for c in (0, 5, 10)])
    >>> res = cluster_points(Z, ClusterConfig())
    >>> res.n_clusters
    3
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bailclio.config import ClusterConfig


@dataclass
class Clustering:
    labels: np.ndarray  # leaf index per point, outliers attached (or -1 when not attached)
    raw_labels: np.ndarray  # HDBSCAN's labels, -1 = noise
    is_outlier: np.ndarray
    probabilities: np.ndarray
    n_clusters: int
    params: dict[str, Any] = field(default_factory=dict)


def default_min_cluster_size(n: int) -> int:
    return int(max(5, round(math.sqrt(n) / 8)))


def attach_outliers(space: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Give each noise point (-1) the label that wins a 1/distance-weighted vote of its k nearest
    clustered neighbours."""
    from sklearn.neighbors import NearestNeighbors

    out = labels.copy()
    noise = np.flatnonzero(labels < 0)
    inliers = np.flatnonzero(labels >= 0)
    if len(noise) == 0 or len(inliers) == 0:
        return out
    k = min(k, len(inliers))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(space[inliers]).kneighbors(space[noise])
    neighbour_labels = labels[inliers][idx]
    weights = 1.0 / (dist + 1e-9)
    n_labels = int(labels.max()) + 1
    votes = np.zeros((len(noise), n_labels))
    np.add.at(votes, (np.repeat(np.arange(len(noise)), k), neighbour_labels.ravel()), weights.ravel())
    out[noise] = votes.argmax(axis=1)
    return out


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Number clusters 0..k-1 from largest to smallest (ties by first appearance)."""
    valid = labels[labels >= 0]
    if len(valid) == 0:
        return labels
    uniq, first = np.unique(valid, return_index=True)
    counts = np.array([(valid == u).sum() for u in uniq])
    order = sorted(range(len(uniq)), key=lambda i: (-counts[i], first[i]))
    mapping = {int(uniq[i]): rank for rank, i in enumerate(order)}
    return np.array([mapping.get(int(v), -1) for v in labels], dtype=np.int64)


def cluster_points(space: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Run HDBSCAN on ``space`` and return leaf labels (see module docstring)."""
    import hdbscan

    from bailclio import gpu

    n = space.shape[0]
    mcs = cfg.min_cluster_size or default_min_cluster_size(n)
    params = {
        "min_cluster_size": mcs,
        "min_samples": cfg.min_samples,
        "cluster_selection_method": cfg.selection_method,
    }
    if n < max(2 * mcs, 4):
        raw = np.zeros(n, dtype=np.int64)
        probs = np.ones(n)
        params["note"] = f"{n} points is too few for min_cluster_size={mcs}: one leaf"
    else:
        if gpu.use_cuml(cfg.backend):  # RAPIDS cuML on a visible GPU (bailclio.gpu)
            model = gpu.hdbscan(
                space, min_cluster_size=min(mcs, n), min_samples=cfg.min_samples, method=cfg.selection_method
            )
            params["backend"] = "cuml"
        else:
            model = hdbscan.HDBSCAN(
                min_cluster_size=min(mcs, n),
                min_samples=cfg.min_samples,
                cluster_selection_method=cfg.selection_method,
                core_dist_n_jobs=1,
            ).fit(space)
        raw = np.asarray(model.labels_).astype(np.int64)
        probs = np.asarray(model.probabilities_)
        if raw.max() < 0:  # everything is noise: one leaf, every point an outlier
            params["note"] = "HDBSCAN found no cluster: one leaf"
            probs = np.zeros(n)
    raw = _relabel_by_size(raw)
    is_outlier = raw < 0
    if raw.max() < 0:
        labels = np.zeros(n, dtype=np.int64)
    elif cfg.attach_outliers:
        labels = attach_outliers(space, raw, cfg.outlier_neighbors)
    else:
        labels = raw.copy()
    return Clustering(
        labels=labels,
        raw_labels=raw,
        is_outlier=is_outlier,
        probabilities=np.asarray(probs),
        n_clusters=int(max(labels.max(), raw.max()) + 1),
        params=params,
    )
