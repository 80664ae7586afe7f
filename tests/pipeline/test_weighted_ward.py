"""Size-weighted Ward over leaf centroids (``[hierarchy] linkage = "ward_weighted"``): with unit
weights it is SciPy's Ward, with integer weights it is Ward over the rows repeated, and a large leaf
is merged by its rows, not as one point."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_mutual_info_score
from support.blobs import check_tree, nested_blobs

from bailclio.config import HierarchyConfig
from bailclio.hierarchy import build_hierarchy, weighted_ward


@pytest.mark.parametrize("n", [2, 3, 40])
def test_unit_weights_give_scipys_ward_tree(n):
    x = np.random.default_rng(n).normal(size=(n, 5))
    ours, theirs = weighted_ward(x, np.ones(n)), linkage(x, "ward")
    assert np.allclose(ours[:, 2], theirs[:, 2])
    assert (ours[:, 3] == theirs[:, 3]).all()
    for cut in range(1, n + 1):
        a, b = fcluster(ours, cut, "maxclust"), fcluster(theirs, cut, "maxclust")
        assert (a[:, None] == a[None, :]).tolist() == (b[:, None] == b[None, :]).tolist()


def test_integer_weights_give_ward_over_the_repeated_rows():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(25, 4)), rng.integers(1, 6, size=25)
    repeated = linkage(np.repeat(x, w, axis=0), "ward")
    ours = weighted_ward(x, w.astype(float))
    # Merges of identical copies cost nothing; the other merges are the weighted tree's.
    assert np.allclose(np.sort(repeated[:, 2])[-(len(x) - 1) :], np.sort(ours[:, 2]))
    assert ours[-1, 3] == len(x)  # column 3 counts leaves, as fcluster expects


def test_a_large_leaf_is_merged_by_its_rows_not_as_one_point():
    # A (100 rows) at 0, B (1 row) at 1.0, C (1 row) at 2.2: centroid distance alone joins A and B
    # first; Ward over the rows joins the two small leaves, which costs far less variance.
    x = np.array([[0.0], [1.0], [2.2]])
    assert set(linkage(x, "ward")[0, :2].astype(int)) == {0, 1}
    assert set(weighted_ward(x, np.array([100.0, 1.0, 1.0]))[0, :2].astype(int)) == {1, 2}


def test_the_weighted_linkage_builds_a_valid_tree_that_finds_the_groups():
    X, group, sub = nested_blobs(6, 5, 12)
    h = build_hierarchy(X, sub, HierarchyConfig(linkage="ward_weighted", n_top=6))
    check_tree(h, 30)
    assert adjusted_mutual_info_score(group, h.groups(sub)[0]) > 0.99
    h = build_hierarchy(X, sub, HierarchyConfig(linkage="ward_weighted"))
    check_tree(h, 30)
