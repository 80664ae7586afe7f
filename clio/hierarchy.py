"""A three-level hierarchy (top categories -> intermediate -> leaves) built without an LLM.

Leaf centroids in the clustering space are merged by one agglomerative (Ward) dendrogram, cut
twice: at ``n_mid`` nodes for the intermediate level and ``n_top`` for the top. Both cuts come from
the same tree, so they nest: every leaf has exactly one intermediate parent and every
intermediate node exactly one top parent. Defaults from the number of leaves k:
``n_top = clamp(round(1.5 * sqrt(k)), 5, 15)`` (at most k // 2) and
``n_mid = round(sqrt(k * n_top))`` (between n_top and k).

Example::

    >>> import numpy as np
    >>> from bailclio.config import HierarchyConfig
    >>> rng = np.random.default_rng(0)
    >>> space = rng.normal(size=(200, 5))
    >>> labels = np.repeat(np.arange(40), 5)
    >>> h = build_hierarchy(space, labels, HierarchyConfig(n_top=4, n_mid=10))
    >>> h.sizes
    [4, 10, 40]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bailclio.config import HierarchyConfig


@dataclass
class Hierarchy:
    """Any number of levels, top first, leaves last. ``parents[d]`` maps each node of level
    ``d + 1`` to its parent's index at level ``d`` (so ``len(parents) == depth - 1``)."""

    parents: list[np.ndarray]
    n_leaves: int
    info: dict = field(default_factory=dict)  # why this depth and these sizes (for the manifest)

    @property
    def depth(self) -> int:
        return len(self.parents) + 1

    @property
    def sizes(self) -> list[int]:
        """Node count per level, top first."""
        return [int(self.parents[0].max()) + 1] + [len(p) for p in self.parents]

    def groups(self, leaf_labels: np.ndarray) -> list[np.ndarray]:
        """Per level (top first), the node index of each point given its leaf label."""
        out = [np.asarray(leaf_labels)]
        for parent in reversed(self.parents):
            out.append(parent[out[-1]])
        return out[::-1]


def default_sizes(k: int, cfg: HierarchyConfig) -> tuple[int, int]:
    n_top = cfg.n_top or int(min(15, max(5, round(1.5 * math.sqrt(k)))))
    n_top = max(1, min(n_top, k // 2 if k >= 4 else 1, k))
    n_mid = cfg.n_mid or int(round(math.sqrt(k * n_top)))
    n_mid = max(n_top, min(n_mid, k))
    return n_top, n_mid


def _relabel(groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Number groups 0.. by total weight, largest first."""
    uniq = np.unique(groups)
    totals = {int(g): float(weights[groups == g].sum()) for g in uniq}
    order = sorted(totals, key=lambda g: (-totals[g], g))
    mapping = {g: i for i, g in enumerate(order)}
    return np.array([mapping[int(g)] for g in groups], dtype=np.int64)


def build_hierarchy(space: np.ndarray, labels: np.ndarray, cfg: HierarchyConfig) -> Hierarchy:
    from scipy.cluster.hierarchy import fcluster, linkage

    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k).astype(float)
    n_top, n_mid = default_sizes(k, cfg)
    if k == 1:
        return Hierarchy([np.zeros(1, dtype=np.int64)], 1)
    centroids = np.stack([space[labels == i].mean(axis=0) for i in range(k)])
    tree = linkage(centroids, method=cfg.linkage)
    mid_raw = fcluster(tree, n_mid, criterion="maxclust") if n_mid < k else np.arange(k)
    top_raw = fcluster(tree, n_top, criterion="maxclust")
    mid_of_leaf = _relabel(mid_raw, sizes)
    n_mid_real = int(mid_of_leaf.max()) + 1
    top_of_leaf = _relabel(top_raw, sizes)
    top_of_mid = np.zeros(n_mid_real, dtype=np.int64)
    for m in range(n_mid_real):
        parents = np.unique(top_of_leaf[mid_of_leaf == m])
        if len(parents) != 1:  # cannot happen for nested cuts of one tree; guard anyway
            counts = [sizes[(mid_of_leaf == m) & (top_of_leaf == p)].sum() for p in parents]
            parents = [parents[int(np.argmax(counts))]]
        top_of_mid[m] = parents[0]
    return Hierarchy([top_of_mid, mid_of_leaf], k, {"n_top": int(top_of_mid.max()) + 1, "n_mid": n_mid_real})
