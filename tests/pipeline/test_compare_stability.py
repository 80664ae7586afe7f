"""Node stability: refits of the clustering on subsets of the reduced space, per-node best-match
Jaccard; written into taxonomy.json, shown by ``show`` and ``export``.

Structure the tests rely on is built to be unambiguous: blobs far apart are found again by any
refit; a node that cuts one blob in two at random is not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bailclio import Taxonomer
from bailclio.cli import main
from bailclio.components import HDBSCANClusterer, WardHierarchy
from bailclio.config import ClusterConfig, Config, HierarchyConfig
from bailclio.rundir import TAXONOMY, load_run
from bailclio.stability import best_match_jaccard, node_stability, refit_function
from bailclio.taxonomy.model import UNSTABLE_BELOW, Taxonomy

CENTRES = [(0, 0), (12, 0), (0, 12), (12, 12), (30, 30), (42, 30)]


def blobs(per: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    space = np.vstack([rng.normal(c, 0.6, size=(per, 2)) for c in CENTRES])
    return space, np.repeat(np.arange(len(CENTRES)), per)


def test_best_match_jaccard_finds_the_closest_group_and_marks_absent_ones():
    got = best_match_jaccard(np.array([0, 0, 0, 2, 2]), np.array([1, 1, 1, 1, 9]))
    assert got[0] == pytest.approx(3 / 4) and got[2] == pytest.approx(1 / 2) and np.isnan(got[1])


def test_well_separated_nodes_are_stable_and_an_arbitrary_cut_is_not():
    space, truth = blobs()
    refit = refit_function(
        space, None, HDBSCANClusterer(ClusterConfig()), WardHierarchy(HierarchyConfig()), [2, 6]
    )
    top = (truth >= 4).astype(int)  # the two far groups of blobs
    stable = node_stability([top, truth], refit, refits=6, seed=1)
    assert all(s.min() >= 0.9 for s in stable)
    rng = np.random.default_rng(3)
    cut = truth.copy()
    mixed = np.flatnonzero(truth <= 1)  # blobs 0 and 1 dealt at random into nodes 0 and 1
    cut[mixed] = rng.permutation(np.arange(len(mixed)) % 2)
    scores = node_stability([top, cut], refit, refits=6, seed=1)[1]
    assert scores[0] < UNSTABLE_BELOW and scores[1] < UNSTABLE_BELOW
    assert min(scores[2:]) >= 0.9
    for s in (*stable, scores):
        assert ((s >= 0) & (s <= 1)).all()


@pytest.fixture(scope="module")
def fitted() -> Taxonomer:
    space, truth = blobs(per=30)
    rng = np.random.default_rng(5)
    vectors = np.hstack([space, rng.normal(0, 0.05, size=(len(space), 6))]).astype(np.float32)
    texts = [f"request {i} about topic {t}" for i, t in enumerate(truth)]
    return Taxonomer(Config(), progress=False).fit(texts, embeddings=vectors)


def test_every_node_of_a_fit_gets_a_stability_in_0_1(fitted, tmp_path):
    assert fitted.manifest_["config"]["cluster"]["stability_refits"] > 0
    assert "stability" in fitted.manifest_["timings_s"]
    for node in fitted.taxonomy_.nodes:
        assert node.stability is not None and 0 <= node.stability <= 1
    path = fitted.save(tmp_path / "run")
    saved = json.loads((path / TAXONOMY).read_text())
    assert all(0 <= n["stability"] <= 1 for n in saved["nodes"])


def test_the_refits_option_sets_the_config():
    from bailclio.cli import build_parser
    from bailclio.commands.run import config_from_args

    args = build_parser().parse_args(["run", "in.csv", "--stability-refits", "3"])
    assert config_from_args(args).cluster.stability_refits == 3
    assert config_from_args(build_parser().parse_args(["run", "in.csv"])).cluster.stability_refits == 10


def test_no_refits_means_no_stability():
    space, truth = blobs(per=20)
    cfg = Config()
    cfg.cluster.stability_refits = 0
    tx = Taxonomer(cfg, progress=False).fit([f"t{i}" for i in range(len(space))], embeddings=space)
    assert all(n.stability is None for n in tx.taxonomy_.nodes)


@pytest.fixture(scope="module")
def rated(fixed_runs, tmp_path_factory) -> Path:
    """The 3-level fixed run with a stability written on every node, every third one unstable."""
    dest = tmp_path_factory.mktemp("stab") / "run"
    shutil.copytree(fixed_runs.run(3), dest)
    data = json.loads((dest / TAXONOMY).read_text())
    for i, node in enumerate(data["nodes"]):
        node["stability"] = 0.2 if i % 3 == 0 else 0.95
    (dest / TAXONOMY).write_text(json.dumps(data))
    return dest


def test_show_prints_stability_and_marks_unstable_nodes(rated, capsys):
    assert main(["show", str(rated)]) == 0
    out = capsys.readouterr().out
    tax = Taxonomy.load(rated / TAXONOMY)
    for node in tax.nodes:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(node.id + " "))
        assert f"{node.stability:.2f}" in line
        assert ("(unstable)" in line) == (node.stability < UNSTABLE_BELOW)
    assert f"below {UNSTABLE_BELOW} marked" in out


def test_export_adds_stability_and_group_share_columns(rated, tmp_path):
    out = tmp_path / "e.parquet"
    with_model = tmp_path / "m"
    shutil.copytree(rated, with_model)
    conv = pl.read_parquet(with_model / "conversations.parquet")
    conv.with_columns(
        model=pl.Series(["A", "B"] * (conv.height // 2) + ["A"] * (conv.height % 2))
    ).write_parquet(with_model / "conversations.parquet")
    args = ["export", str(with_model), "--format", "parquet", "--out", str(out), "--compare-by", "model"]
    assert main(args) == 0
    frame = pl.read_parquet(out)
    run = load_run(with_model)
    for stem in ("top", "leaf"):
        expected = [run.taxonomy.by_id[i].stability for i in frame[f"{stem}_id"]]
        assert frame[f"{stem}_stability"].to_list() == expected
    for g in ("A", "B"):
        assert {f"share_{g}", f"share_{g}_lo", f"share_{g}_hi"} <= set(frame.columns)
        assert (frame[f"share_{g}_lo"] <= frame[f"share_{g}"]).all()
        assert (frame[f"share_{g}"] <= frame[f"share_{g}_hi"]).all()
    per_leaf = frame.group_by("leaf_id").agg(pl.col("share_A").first()).sort("leaf_id")
    assert per_leaf["share_A"].sum() == pytest.approx(1.0)
    assert frame["compare_significant"].dtype == pl.Boolean
    assert main(["export", str(with_model), "--format", "bailbench", "--compare-by", "model"]) == 2
