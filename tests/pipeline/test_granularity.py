"""Granularity and depth come from the data: capped excess-of-mass leaves, depth from the number of
leaves, pinned depth and sizes honoured, no top category swallowing the data.

Inputs are built so that their structure is unambiguous (well-separated Gaussian blobs); the
assertions hold for any valid clustering of them, not for one machine's floating-point path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import adjusted_mutual_info_score
from support.blobs import check_tree, nested_blobs

from bailclio.cluster import cluster_points
from bailclio.config import ClusterConfig, Config, HierarchyConfig
from bailclio.hierarchy import build_hierarchy, level_sizes


def test_a_few_dense_groups_do_not_become_a_few_huge_leaves():
    # Three groups of four close sub-blobs each: excess of mass alone may pick the three groups (a
    # third of the data each); with the default cap no leaf holds more than a fifth, and the
    # leaves follow the sub-blobs.
    X, group, sub = nested_blobs(3, 4, 40, seed=2, radius=4.0, sd=0.7)
    res = cluster_points(X, ClusterConfig())
    shares = np.bincount(res.labels) / len(X)
    assert shares.max() <= 0.2 + 1e-9
    assert adjusted_mutual_info_score(sub, res.labels) > 0.85
    assert res.params["max_cluster_size"] <= int(np.ceil(0.2 * len(X)))


def test_the_cap_can_be_turned_off():
    X, group, sub = nested_blobs(3, 4, 40, seed=2, radius=4.0, sd=0.7)
    res = cluster_points(X, ClusterConfig(max_leaf_share=None))
    assert "max_cluster_size" not in res.params
    # Without the cap every leaf still lies inside one group (any valid clustering of this input).
    for leaf in np.unique(res.labels):
        assert len(np.unique(group[res.labels == leaf])) == 1


def test_one_blob_is_flagged_as_having_no_structure_or_split():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5))
    res = cluster_points(X, ClusterConfig())
    if res.n_clusters < 2:
        assert res.params.get("no_structure") is True
    else:
        assert not res.params.get("no_structure")


@pytest.mark.parametrize("k, lo, hi", [(12, 2, 2), (20, 2, 2), (150, 3, 3), (1000, 4, 5), (5000, 4, 6)])
def test_depth_grows_with_the_number_of_leaves(k, lo, hi):
    sizes = level_sizes(k, int(round(3.25 * k ** (1 / 3))), HierarchyConfig())
    assert lo <= len(sizes) <= hi
    assert sizes[-1] == k
    ratios = [b / a for a, b in zip(sizes, sizes[1:], strict=False)]
    assert all(1 < r <= 8 for r in ratios)


def test_every_level_is_a_coarsening_with_one_parent_per_node():
    X, group, sub = nested_blobs(6, 5, 12)
    h = build_hierarchy(X, sub, HierarchyConfig())
    check_tree(h, 30)
    assert 2 <= h.depth <= 3
    assert h.info["reason"]


def test_top_level_recovers_well_separated_groups():
    X, group, sub = nested_blobs(6, 5, 12)
    h = build_hierarchy(X, sub, HierarchyConfig(n_top=6))
    top = h.groups(sub)[0]
    assert adjusted_mutual_info_score(group, top) > 0.99


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
def test_pinned_depth_is_honoured(levels):
    X, group, sub = nested_blobs(4, 16, 5)
    h = build_hierarchy(X, sub, HierarchyConfig(levels=levels))
    assert h.depth == levels
    check_tree(h, 64)


def test_pinned_sizes_are_honoured():
    X, group, sub = nested_blobs(4, 16, 5)
    h = build_hierarchy(X, sub, HierarchyConfig(sizes=[4, 16]))
    assert h.sizes == [4, 16, 64]
    assert "pinned" in h.info["reason"]


def test_sizes_must_grow_towards_the_leaves():
    with pytest.raises(ValueError, match="more nodes than the one above"):
        Config.model_validate({"hierarchy": {"sizes": [8, 4]}})


def test_no_top_category_holds_most_of_the_data_when_the_tree_allows():
    # One group of 12 sub-blobs (three quarters of the rows) beside four small groups: the cut at
    # the default top count would lump the big group into one node; the top count is raised.
    rng = np.random.default_rng(1)
    X_big, _, sub_big = nested_blobs(1, 12, 20, seed=1)
    X_small, _, sub_small = nested_blobs(4, 1, 20, seed=2)
    X = np.vstack([X_big, X_small + 500.0 + rng.normal(size=X_small.shape[1])])
    sub = np.concatenate([sub_big, sub_small + 12])
    h = build_hierarchy(X, sub, HierarchyConfig())
    top = h.groups(sub)[0]
    assert np.bincount(top).max() / len(sub) <= 0.6
    check_tree(h, 16)


def test_a_handful_of_leaves_gives_a_valid_two_level_tree():
    for k in (1, 2, 3):
        labels = np.repeat(np.arange(k), 3)
        X = np.random.default_rng(0).normal(size=(3 * k, 4)) + labels[:, None] * 10
        h = build_hierarchy(X, labels, HierarchyConfig())
        assert h.depth == 2
        assert h.sizes[-1] == k
        assert all(len(p) > 0 for p in h.parents)


def test_a_real_run_of_300_rows_has_several_top_categories_and_says_why(small_run):
    from bailclio.rundir import load_run

    run = load_run(small_run)
    tops = run.taxonomy.level(0)
    assert len(tops) >= 2
    assert max(n.size for n in tops) <= 0.6 * run.assignments.height
    resolved = run.manifest["resolved"]
    assert resolved["hierarchy"]["reason"]
    assert resolved["cluster"]["max_cluster_size"] <= 0.2 * run.assignments.height + 1
    assert resolved["hierarchy"]["sizes"] == [len(run.taxonomy.level(d)) for d in range(run.taxonomy.depth)]


def test_texts_without_structure_are_said_to_have_none_or_are_split(tmp_path, capsys):
    from bailclio.cli import main

    path = tmp_path / "same.csv"
    rows = ["text"] + [f"Please repeat the number {i}." for i in range(60)]
    path.write_text("\n".join(rows) + "\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    if manifest["counts"]["top"] < 2:
        assert manifest["resolved"]["cluster"].get("no_structure") is True
        assert "no cluster structure" in out


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_inputs_give_a_valid_run(tmp_path, capsys, n):
    from bailclio.cli import main
    from bailclio.rundir import load_run

    src = Path(__file__).resolve().parents[2] / "data" / "bailbench.csv"
    path = tmp_path / "tiny.csv"
    pl.read_csv(src).head(n).write_csv(path)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    run = load_run(tmp_path / "run")
    assert run.assignments.height == n
    assert run.taxonomy.depth >= 2
    leaf_ids = {node.id for node in run.taxonomy.level(run.taxonomy.depth - 1)}
    assert set(run.assignments["leaf_id"].to_list()) <= leaf_ids
