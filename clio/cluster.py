"""HDBSCAN leaf clusters over the reduced space, with noise points flagged, not hidden.

Points HDBSCAN calls noise get ``is_outlier = True``; by default they are also attached to the
cluster that wins a distance-weighted vote among their nearest clustered neighbours, so every
row lands in a leaf. ``min_cluster_size`` defaults from N (``max(5, round(sqrt(N) / 8))``).

Granularity: excess-of-mass selection, capped so that no leaf holds more than
``max_leaf_share`` of the points (a cluster above the cap is
replaced by the best selection among its descendants in the condensed tree, when child clusters
hold at least half of its points). Where excess of mass still finds one cluster
or none, leaf selection (the finest clusters of the condensed tree) is used instead; where that
finds one or none too, the data has no cluster structure at this size, and ``params`` says so
(``no_structure``). ``params`` records the selection and why, for the manifest.

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
from typing import Any

import numpy as np

from bailclio.config import ClusterConfig
from bailclio.stages import Clustering


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


def max_cluster_size(n: int, mcs: int, cfg: ClusterConfig) -> int:
    """The largest leaf allowed for ``n`` points (0: no cap): ``max_leaf_share`` of ``n``."""
    if cfg.max_leaf_share is None or cfg.max_leaf_share >= 1 or cfg.selection_method != "eom":
        return 0
    return int(max(2 * mcs, math.ceil(cfg.max_leaf_share * n)))


def _hdbscan(space: np.ndarray, mcs: int, min_samples: int | None, method: str) -> Any:
    import hdbscan

    return hdbscan.HDBSCAN(
        min_cluster_size=min(mcs, len(space)),
        min_samples=min_samples,
        cluster_selection_method=method,
        core_dist_n_jobs=1,
    ).fit(space)


def capped_eom(raw_tree: np.ndarray, n: int, cap: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Excess-of-mass selection on HDBSCAN's condensed tree where a cluster above ``cap`` points
    is replaced by the best selection among its descendants, when it has child clusters that
    hold at least half of its points (a compact cluster with only small offshoots stays whole).

    Returns (labels with -1 for noise, membership strength in [0, 1], clusters split by the cap).
    The root is never selected, as in HDBSCAN's default.
    """
    parent = raw_tree["parent"].astype(np.int64)
    child = raw_tree["child"].astype(np.int64)
    lam = raw_tree["lambda_val"].astype(np.float64)
    size = raw_tree["child_size"].astype(np.int64)
    root = n
    n_nodes = int(max(parent.max(), child.max())) + 1
    birth = np.zeros(n_nodes)
    node_size = np.zeros(n_nodes, dtype=np.int64)
    node_size[root] = n
    is_cl = child >= n
    birth[child[is_cl]] = lam[is_cl]
    node_size[child[is_cl]] = size[is_cl]
    stability = np.zeros(n_nodes)
    np.add.at(stability, parent, (lam - birth[parent]) * size)
    kids: dict[int, list[int]] = {}
    for p_, c_ in zip(parent[is_cl], child[is_cl], strict=True):
        kids.setdefault(int(p_), []).append(int(c_))
    best = np.zeros(n_nodes)
    chosen: dict[int, list[int]] = {}
    split = 0
    for node in range(n_nodes - 1, root - 1, -1):  # children have larger ids than their parents
        ks = kids.get(node, [])
        if not ks:
            best[node], chosen[node] = stability[node], [node]
            continue
        below = sum(best[k] for k in ks)
        below_sel = [c for k in ks for c in chosen[k]]
        too_big = node_size[node] > cap > 0
        substantial = sum(node_size[k] for k in ks) >= 0.5 * node_size[node]
        keep_whole = stability[node] >= below and not (too_big and substantial)
        if node != root and keep_whole:
            best[node], chosen[node] = stability[node], [node]
        else:
            if stability[node] >= below and too_big and substantial and node != root:
                split += 1
            best[node], chosen[node] = below, below_sel
    selected = chosen[root] if kids.get(root) else []
    label_of = np.full(n_nodes, -1, dtype=np.int64)
    for i, c in enumerate(sorted(selected)):
        label_of[c] = i
    order = np.argsort(child[is_cl])
    for p_, c_ in zip(parent[is_cl][order], child[is_cl][order], strict=True):
        if label_of[c_] < 0 and label_of[p_] >= 0:
            label_of[c_] = label_of[p_]
    pts = ~is_cl
    labels = np.full(n, -1, dtype=np.int64)
    labels[child[pts]] = label_of[parent[pts]]
    point_lam = np.zeros(n)
    point_lam[child[pts]] = lam[pts]
    strength = np.zeros(n)
    for lab in range(len(selected)):
        members = labels == lab
        top = point_lam[members].max() if members.any() else 0.0
        if np.isfinite(top) and top > 0:
            strength[members] = np.minimum(point_lam[members], top) / top
        else:
            strength[members] = 1.0
    return labels, strength, split


def cluster_points(space: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Run HDBSCAN on ``space`` and return leaf labels (see module docstring)."""
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
            cap = max_cluster_size(n, mcs, cfg)
            if cap:
                params["max_cluster_size"] = cap
                params["selection_reason"] = (
                    f"excess of mass, no leaf above {cfg.max_leaf_share:.0%} of the points "
                    f"(a larger one with substantial child clusters is split into them)"
                )
            else:
                params["selection_reason"] = f"{cfg.selection_method} selection as configured"
            model = _hdbscan(space, mcs, cfg.min_samples, cfg.selection_method)
            raw = np.asarray(model.labels_).astype(np.int64)
            probs = np.asarray(model.probabilities_)
            if cap and len(raw) and np.bincount(raw[raw >= 0], minlength=1).max() > cap:
                raw, probs, n_split = capped_eom(model.condensed_tree_._raw_tree, n, cap)
                params["clusters_split_by_cap"] = n_split
            if raw.max() < 1 and cfg.selection_method == "eom":
                # One cluster or none by excess of mass: the finest clusters HDBSCAN found instead.
                leaf = _hdbscan(space, mcs, cfg.min_samples, "leaf")
                if np.asarray(leaf.labels_).max() >= 1:
                    raw = np.asarray(leaf.labels_).astype(np.int64)
                    probs = np.asarray(leaf.probabilities_)
                    params["cluster_selection_method"] = "leaf"
                    params["selection_reason"] = "excess of mass found one cluster or none: leaf selection"
        if gpu.use_cuml(cfg.backend):
            raw = np.asarray(model.labels_).astype(np.int64)
            probs = np.asarray(model.probabilities_)
        if raw.max() < 0:  # everything is noise: one leaf, every point an outlier
            params["note"] = "HDBSCAN found no cluster: one leaf"
            probs = np.zeros(n)
        if raw.max() < 1:
            params["no_structure"] = True
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


def clustering_from_labels(
    labels: np.ndarray,
    space: np.ndarray,
    *,
    probabilities: np.ndarray | None = None,
    params: dict[str, Any] | None = None,
    attach: bool = True,
    neighbors: int = 10,
) -> Clustering:
    """A :class:`Clustering` from any labelling (``-1`` = noise): leaves renumbered 0..k-1 from
    the largest, noise flagged ``is_outlier`` and, with ``attach``, given the leaf of its nearest
    clustered neighbours as HDBSCAN's noise is."""
    raw_in = np.asarray(labels, dtype=np.int64)
    n = raw_in.shape[0]
    valid = raw_in[raw_in >= 0]
    raw = np.full(n, -1, dtype=np.int64)
    if len(valid):
        uniq, first, counts = np.unique(valid, return_index=True, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-counts[i], first[i]))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        raw[raw_in >= 0] = rank[np.searchsorted(uniq, valid)]
    is_outlier = raw < 0
    if not len(valid):
        out = np.zeros(n, dtype=np.int64)
    elif attach and is_outlier.any():
        out = attach_outliers(space, raw, neighbors)
    else:
        out = raw.copy()
    probs = np.where(is_outlier, 0.0, 1.0) if probabilities is None else np.asarray(probabilities)
    return Clustering(
        labels=out,
        raw_labels=raw,
        is_outlier=is_outlier,
        probabilities=probs,
        n_clusters=int(max(out.max(initial=-1), raw.max(initial=-1)) + 1),
        params=dict(params or {}),
    )
