"""Nested Gaussian blobs whose hierarchy is unambiguous, and the check of a tree built over them."""

from __future__ import annotations

import numpy as np


def nested_blobs(
    n_groups: int, n_sub: int, per_sub: int, seed: int = 0, dim: int = 6, radius: float = 8.0, sd: float = 0.3
):
    """``n_groups`` far-apart groups, each of ``n_sub`` sub-blobs ``radius`` from the group's
    centre with spread ``sd``: (points, group, sub)."""
    rng = np.random.default_rng(seed)
    points, group, sub = [], [], []
    for g in range(n_groups):
        centre = rng.normal(size=dim) * 0 + np.eye(dim)[g % dim] * 60.0 * (1 + g // dim)
        for s in range(n_sub):
            offset = rng.normal(size=dim)
            offset *= radius / np.linalg.norm(offset)
            points.append(rng.normal(centre + offset, sd, size=(per_sub, dim)))
            group += [g] * per_sub
            sub += [g * n_sub + s] * per_sub
    return np.vstack(points), np.array(group), np.array(sub)


def check_tree(h, k: int) -> None:
    """Every level a real coarsening; every node has exactly one parent and at least one child."""
    assert h.sizes[-1] == k
    assert all(b > a for a, b in zip(h.sizes, h.sizes[1:], strict=False)) or h.sizes[0] == k
    for level, parent in enumerate(h.parents):
        assert len(parent) == h.sizes[level + 1]
        assert set(parent.tolist()) == set(range(h.sizes[level]))  # no childless parent
