"""A hierarchy of any depth (top categories -> ... -> leaves) built without an LLM.

Leaf centroids are merged by one agglomerative (Ward) dendrogram and the dendrogram is cut once
per level. By default each centroid weighs as many rows as its leaf holds (:func:`weighted_ward`),
so the tree is Ward's tree over the rows with every leaf kept whole; ``linkage = "ward"`` counts
every leaf as one point. All cuts come from the same tree, so they nest: every node has exactly one parent.
The centroids live in the clustering space joined with the centred embeddings (when given), so
the upper levels see the embedding geometry that UMAP's local layout flattens.

Depth and node counts come from the number of leaves ``k`` unless pinned in
:class:`~bailclio.config.HierarchyConfig`:

* top level: ``round(top_factor * k ** (1/3))`` nodes (at least 2 when ``k >= 4``, at most
  ``k // 2``), then raised one at a time while any top node holds more than ``top_max_share`` of
  the rows (a cut that lumps most data into one category is not a top level);
* levels between the top and the leaves: as many as it takes for each level to have about
  ``branching`` times the nodes of the level above (never more than ``max_branching``), with node
  counts spaced geometrically. So 20 leaves give two levels, 150 leaves three, 1,000 leaves four.

``levels`` pins the depth, ``sizes`` the node counts above the leaves (top first), ``n_top`` the
top level alone; ``n_mid`` (with ``n_top``) asks for the classic three levels.

Example::

    >>> import numpy as np
    >>> from bailclio.config import HierarchyConfig
    >>> rng = np.random.default_rng(0)
    >>> space = rng.normal(size=(200, 5))
    >>> labels = np.repeat(np.arange(40), 5)
    >>> build_hierarchy(space, labels, HierarchyConfig(sizes=[4, 10])).sizes
    [4, 10, 40]
    >>> build_hierarchy(space, labels, HierarchyConfig(levels=2)).depth
    2
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bailclio.config import HierarchyConfig
from bailclio.stages import Hierarchy


def default_top(k: int, cfg: HierarchyConfig) -> int:
    """Top-level node count for ``k`` leaves before the share check."""
    if k < 4:
        return k
    top = cfg.n_top or int(round(cfg.top_factor * k ** (1 / 3)))
    return int(max(2, min(top, k // 2)))


def level_sizes(k: int, top: int, cfg: HierarchyConfig) -> list[int]:
    """Node counts from the top to the leaves (``k`` last), geometric between ``top`` and ``k``."""
    if top >= k:
        return [k, k]
    if cfg.levels:
        steps = cfg.levels - 1
    else:
        ratio = k / top
        steps = max(1, int(round(math.log(ratio) / math.log(cfg.branching))))
        while ratio ** (1 / steps) > cfg.max_branching:
            steps += 1
    sizes = [int(round(top * (k / top) ** (i / steps))) for i in range(steps + 1)]
    sizes[0], sizes[-1] = top, k
    out: list[int] = []
    for s in sizes:  # strictly increasing: a level as big as the one above it is no coarsening
        if not out or s > out[-1]:
            out.append(min(s, k))
    if out[-1] != k:
        out[-1] = k
    return out


def hierarchy_space(space: np.ndarray, vectors: np.ndarray | None) -> np.ndarray:
    """The clustering space scaled to unit mean squared norm, joined with the centred embeddings
    (each row unit length), so both carry about equal weight in the Ward merges."""
    centred = space - space.mean(axis=0, keepdims=True)
    scale = math.sqrt(float((centred**2).sum(axis=1).mean())) or 1.0
    parts = [centred / scale]
    if vectors is not None and len(vectors) == len(space) and len(space) > 1:
        v = vectors - vectors.mean(axis=0, keepdims=True)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        parts.append(v / norms)
    return np.hstack(parts).astype(np.float64)


def _relabel(groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Number groups 0.. by total weight, largest first."""
    uniq = np.unique(groups)
    totals = {int(g): float(weights[groups == g].sum()) for g in uniq}
    order = sorted(totals, key=lambda g: (-totals[g], g))
    mapping = {g: i for i, g in enumerate(order)}
    return np.array([mapping[int(g)] for g in groups], dtype=np.int64)


def weighted_ward(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Ward's agglomeration of weighted points, as a SciPy linkage matrix.

    Merging clusters ``a`` and ``b`` costs ``w_a * w_b / (w_a + w_b) * |c_a - c_b|^2``, the rise in
    the weighted within-cluster sum of squares; with unit weights this is SciPy's ``ward``. With
    leaf sizes as weights, the tree over leaf centroids is Ward's tree over the rows themselves,
    constrained to keep each leaf whole, so a large leaf is not merged as if it were one row.
    Column 3 counts the points (leaves) below each node, as ``fcluster`` expects; heights are
    ``sqrt(2 * cost)`` (SciPy's scale) and never decrease (Ward is reducible).
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    cent = pts.copy()
    w = np.asarray(weights, dtype=np.float64).copy()
    count = np.ones(n)
    ids = np.arange(n)
    active = np.ones(n, dtype=bool)
    sq = (cent**2).sum(axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * cent @ cent.T, 0.0)
    cost = (w[:, None] * w[None, :]) / (w[:, None] + w[None, :]) * dist
    np.fill_diagonal(cost, np.inf)
    best = cost.argmin(axis=1) if n > 1 else np.zeros(n, dtype=np.int64)  # each row's cheapest merge
    best_cost = cost[np.arange(n), best] if n > 1 else np.full(n, np.inf)
    z = np.zeros((max(n - 1, 0), 4))
    height = 0.0
    for step in range(n - 1):
        a = int(np.argmin(np.where(active, best_cost, np.inf)))
        b = int(best[a])
        a, b = min(a, b), max(a, b)
        height = max(height, math.sqrt(2 * float(cost[a, b])))
        z[step] = [min(ids[a], ids[b]), max(ids[a], ids[b]), height, count[a] + count[b]]
        wa, wb = w[a], w[b]
        cent[a] = (wa * cent[a] + wb * cent[b]) / (wa + wb)
        w[a], count[a], ids[a] = wa + wb, count[a] + count[b], n + step
        active[b] = False
        cost[b, :] = cost[:, b] = np.inf
        best_cost[b] = np.inf
        others = np.flatnonzero(active)
        others = others[others != a]
        if not len(others):
            break
        d = ((cent[others] - cent[a]) ** 2).sum(axis=1)
        cost[a, others] = cost[others, a] = w[a] * w[others] / (w[a] + w[others]) * d
        best[a] = others[int(np.argmin(cost[a, others]))]
        best_cost[a] = cost[a, best[a]]
        # Ward is reducible: a merge never brings a third cluster nearer than its nearer part was,
        # so only rows that pointed at a or b need a full rescan; the rest only compare with a.
        stale = others[(best[others] == a) | (best[others] == b)]
        for i in stale:
            best[i] = int(np.argmin(cost[i]))
            best_cost[i] = cost[i, best[i]]
        nearer = others[cost[others, a] < best_cost[others]]
        best[nearer] = a
        best_cost[nearer] = cost[nearer, a]
    return z


def _cut(tree: np.ndarray, n: int, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    if n >= k:
        return np.arange(k)
    return fcluster(tree, n, criterion="maxclust")


def _parents_from_cuts(cuts: list[np.ndarray], weights: np.ndarray) -> list[np.ndarray]:
    """Parent maps (top first) from per-leaf group labels of nested cuts (top first, leaves last)."""
    of_leaf = [_relabel(c, weights) for c in cuts[:-1]] + [np.arange(len(weights))]  # leaves keep their ids
    parents = []
    for upper, lower in zip(of_leaf[:-1], of_leaf[1:], strict=True):
        n_lower = int(lower.max()) + 1
        p = np.zeros(n_lower, dtype=np.int64)
        for node in range(n_lower):
            ups, counts = np.unique(upper[lower == node], return_counts=True)
            p[node] = ups[int(np.argmax(counts))]  # one parent: nested cuts of one tree
        parents.append(p)
    return parents


def build_hierarchy(
    space: np.ndarray,
    labels: np.ndarray,
    cfg: HierarchyConfig,
    vectors: np.ndarray | None = None,
) -> Hierarchy:
    """Nested Ward cuts over the leaf centroids; depth and sizes as the module docstring says."""
    from scipy.cluster.hierarchy import linkage

    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    weights = np.bincount(labels, minlength=k).astype(float)
    if k == 1:
        return Hierarchy([np.zeros(1, dtype=np.int64)], 1, {"reason": "one leaf"})
    info: dict[str, Any] = {}
    if cfg.sizes:
        sizes = sorted({min(int(s), k) for s in cfg.sizes} | {k})
        info["reason"] = f"node counts pinned in the config: {sizes}"
    elif k < 4:
        sizes = [k, k]
        info["reason"] = f"{k} leaves: too few to group, each top category holds one leaf"
    else:
        sizes = []
    if sizes and sizes[0] >= k and len(sizes) == 1:
        sizes = [k, k]
    h_space = hierarchy_space(space, vectors)
    centroids = np.stack([h_space[labels == i].mean(axis=0) for i in range(k)])
    if cfg.linkage == "ward_weighted":
        tree = weighted_ward(centroids, weights)
    else:
        tree = linkage(centroids, method=cfg.linkage)
    if not sizes:
        top = default_top(k, cfg)
        first = top
        why = f"top = round({cfg.top_factor} * k^(1/3)) = {top} for k = {k} leaves"
        if cfg.n_top:
            why = f"top pinned at {top}"
        if not cfg.n_top:
            # Raise the top count while one top node holds more than top_max_share of the rows.
            while top < k // 2 or top == first:
                cut = _cut(tree, top, k)
                share = max(weights[cut == g].sum() for g in np.unique(cut)) / weights.sum()
                if share <= cfg.top_max_share or top >= k // 2:
                    break
                top += 1
            if top > first:
                why += (
                    f", raised to {top}: no top category holds more than {cfg.top_max_share:.0%} of the rows"
                )
        if cfg.n_mid and cfg.n_top and cfg.n_mid < k:
            sizes = [top, max(top, cfg.n_mid), k] if cfg.n_mid > top else [top, k]
            why += f"; intermediate level pinned at {cfg.n_mid}"
        else:
            sizes = level_sizes(k, top, cfg)
            how = "pinned" if cfg.levels else f"about {cfg.branching} children per parent"
            why += f"; {len(sizes)} levels ({how})"
        info["reason"] = why
    cuts = [_cut(tree, n, k) for n in sizes]
    if sizes[0] >= k:  # k < 4 or pinned as many top nodes as leaves: one leaf per top node
        cuts = [np.arange(k), np.arange(k)]
    parents = _parents_from_cuts(cuts, weights)
    hier = Hierarchy(parents, k, info)
    info["requested_sizes"] = [int(s) for s in sizes]
    info["linkage"] = cfg.linkage
    return hier
