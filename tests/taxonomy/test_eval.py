"""``bailclio eval`` and taxonomy.evaluate: hand-checked numbers, sklearn agreement, a real run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn import metrics
from support.small_runs import build_runs  # noqa: E402

from bailclio.cli import main
from bailclio.rundir import Run, load_run
from bailclio.taxonomy.evaluate import evaluate_run, score_labels
from bailclio.taxonomy.model import Node, Taxonomy


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def tiny_run() -> Run:
    """Six rows; T0 -> {L0, L1}, T1 -> {L2}; rows 2 and 5 are outliers."""
    tax = Taxonomy(
        [
            Node("T0", None, 0, "first", size=5),
            Node("T1", None, 0, "second", size=1),
            Node("L0", "T0", 1, "a", size=3),
            Node("L1", "T0", 1, "b", size=2),
            Node("L2", "T1", 1, "c", size=1),
        ]
    )
    leaves = ["L0", "L0", "L0", "L1", "L1", "L2"]
    tops = ["T0", "T0", "T0", "T0", "T0", "T1"]
    ids = [str(i) for i in range(6)]
    assignments = pl.DataFrame(
        {
            "conversation_id": ids,
            "leaf_id": leaves,
            "top_id": tops,
            "path": [[t, lf] for t, lf in zip(tops, leaves, strict=True)],
            "is_outlier": [False, False, True, False, False, True],
            "x": [0.0] * 6,
            "y": [0.0] * 6,
        }
    )
    conversations = pl.DataFrame(
        {"conversation_id": ids, "text": ["t"] * 6, "label": ["x", "x", "y", "y", "y", "y"]}
    )
    return Run(Path("tiny"), {}, conversations, assignments, tax)


def by(rows, level, mode="own"):
    return next(r for r in rows if r["level"] == level and r["outliers"] == mode)


def test_purity_and_reconstruction_match_hand_computed_values():
    # clusters a={x,x,y}, b={y,y}, c={x}: majorities 2 + 2 + 1 of 6 rows
    r = score_labels(["a", "a", "a", "b", "b", "c"], ["x", "x", "y", "y", "y", "x"])
    assert r["purity"] == pytest.approx(5 / 6)
    assert r["reconstruction_accuracy"] == pytest.approx(5 / 6)
    assert r["n_clusters"] == 3 and r["n"] == 6 and r["n_truth_labels"] == 2
    # cluster a's majority taken from its core rows (only row 2, label y): rows 0 and 1 miss
    r = score_labels(
        ["a", "a", "a", "b", "b", "c"],
        ["x", "x", "y", "y", "y", "x"],
        core=[False, False, True, True, True, True],
    )
    assert r["purity"] == pytest.approx(5 / 6)
    assert r["reconstruction_accuracy"] == pytest.approx(4 / 6)


def test_scores_agree_with_scikit_learn():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 7, size=200)
    truth = (pred // 2 + (rng.random(200) < 0.3) * rng.integers(0, 4, size=200)) % 4
    r = score_labels(pred.tolist(), truth.tolist())
    assert r["ami"] == pytest.approx(metrics.adjusted_mutual_info_score(truth, pred))
    assert r["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(truth, pred))
    assert r["ari"] == pytest.approx(metrics.adjusted_rand_score(truth, pred))
    h, c, v = metrics.homogeneity_completeness_v_measure(truth, pred)
    assert (r["homogeneity"], r["completeness"], r["v_measure"]) == pytest.approx((h, c, v))
    cm = metrics.cluster.contingency_matrix(truth, pred)
    assert r["purity"] == pytest.approx(cm.max(axis=0).sum() / 200)


def test_outlier_modes_on_a_tiny_run():
    run = tiny_run()
    rows = []
    for mode in ("own", "excluded", "attached"):
        rows += evaluate_run(run, ["label"], outliers=mode)
    assert evaluate_run(run, ["label"]) == [r for r in rows if r["outliers"] == "own"]
    assert evaluate_run(run, ["label"], exclude_outliers=True) == [
        r for r in rows if r["outliers"] == "excluded"
    ]
    own = by(rows, 1)
    # outliers become one cluster {y, y}: L0={x,x}, L1={y,y}, outliers={y,y}: pure
    assert own["purity"] == pytest.approx(1.0)
    assert own["n_clusters"] == 3
    # reconstruction maps L0 -> x from its clustered rows, so outlier row 2 (y in L0) misses
    assert own["reconstruction_accuracy"] == pytest.approx(5 / 6)
    assert own["outlier_share"] == pytest.approx(2 / 6)
    truth = ["x", "x", "y", "y", "y", "y"]
    assert own["ami"] == pytest.approx(
        metrics.adjusted_mutual_info_score(truth, ["L0", "L0", "o", "L1", "L1", "o"])
    )
    excluded = by(rows, 1, "excluded")
    assert excluded["n"] == 4 and excluded["purity"] == 1.0 and excluded["ari"] == pytest.approx(1.0)
    attached = by(rows, 1, "attached")
    assert attached["purity"] == pytest.approx(5 / 6)
    assert attached["n_clusters"] == 3
    top = by(rows, 0, "attached")
    # T0 = {x,x,y,y,y}, T1 = {y}; T0's clustered rows tie 2-2, the first seen (x) wins
    assert top["purity"] == pytest.approx(4 / 6)
    assert top["reconstruction_accuracy"] == pytest.approx(3 / 6)


def test_eval_json_on_a_real_run_matches_scikit_learn(runs, capsys):
    assert main(["eval", str(runs["full"]), "--truth", "category", "--truth", "subcategory", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    run = load_run(runs["full"])
    assert {(r["level"], r["truth"]) for r in rows} == {
        (lv, t) for lv in range(run.taxonomy.depth) for t in ("category", "subcategory")
    }
    conv = pl.read_parquet(runs["full"] / "conversations.parquet")
    assign = pl.read_parquet(runs["full"] / "assignments.parquet")
    leaf = [
        "outlier" if o else lf
        for lf, o in zip(assign["leaf_id"].to_list(), assign["is_outlier"].to_list(), strict=True)
    ]
    leaf_level = run.taxonomy.depth - 1
    leaf_cat = next(r for r in rows if r["level"] == leaf_level and r["truth"] == "category")
    assert leaf_cat["ami"] == pytest.approx(metrics.adjusted_mutual_info_score(conv["category"], leaf))
    assert leaf_cat["n"] == 300
    assert leaf_cat["outlier_share"] == pytest.approx(assign["is_outlier"].mean())
    # any partition is at least as pure as the largest category's share, and at most 1
    largest = conv["category"].value_counts()["count"].max() / conv.height
    assert largest <= leaf_cat["purity"] <= 1.0


def test_eval_all_prints_every_outlier_mode(runs, capsys):
    assert main(["eval", str(runs["full"]), "--truth", "category", "--all"]) == 0
    out = capsys.readouterr().out
    for mode in ("own", "excluded", "attached"):
        assert f" {mode} " in out
    assert "AMI" in out and "purity" in out


def test_missing_truth_column_names_the_available_ones(runs, capsys):
    assert main(["eval", str(runs["full"]), "--truth", "topic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'topic' not found" in err and "subcategory" in err and "category" in err


def test_unknown_and_incompatible_run_directories_fail_cleanly(runs, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--truth", "category"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    old = tmp_path / "old"
    shutil.copytree(runs["full"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 99
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert main(["eval", str(old), "--truth", "category"]) == 2
    err = capsys.readouterr().err.strip()
    assert "version" in err and len(err.splitlines()) == 1


def test_eval_scores_outliers_both_as_their_own_group_and_attached_and_says_which(runs, capsys):
    assert main(["eval", str(runs["full"]), "--truth", "category"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:2][1:] == ["category"]]
    assert {r[2] for r in rows} == {"own", "attached"}
    assert "own = outliers as one extra cluster" in out and "attached = outliers in their nearest leaf" in out
    assert main(["eval", str(runs["full"]), "--truth", "category", "--json"]) == 0
    modes = [r["outliers"] for r in json.loads(capsys.readouterr().out)]
    assert sorted(set(modes)) == ["attached", "own"] and modes.count("own") == modes.count("attached")
