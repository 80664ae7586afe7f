"""The no-LLM pipeline: each stage on synthetic data, then real end-to-end runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bailclio import rundir
from bailclio.cli import main as cli_main
from bailclio.cluster import attach_outliers, cluster_points
from bailclio.config import ClusterConfig, Config, EmbeddingConfig, HierarchyConfig, load_config
from bailclio.hierarchy import build_hierarchy
from bailclio.naming import ctfidf_keywords, name_from_keywords
from bailclio.pipeline import run
from bailclio.taxonomy.model import Taxonomy


def blobs(n_blobs: int = 6, per: int = 40, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10, size=(n_blobs, dim))
    X = np.vstack([rng.normal(c, 0.5, size=(per, dim)) for c in centers])
    return X.astype(np.float32), np.repeat(np.arange(n_blobs), per)


# ---------------------------------------------------------------- stages


def test_hdbscan_recovers_separated_groups_and_flags_noise() -> None:
    X, truth = blobs()
    far = np.full((3, X.shape[1]), 200.0, dtype=np.float32) + np.arange(3)[:, None] * 50
    res = cluster_points(np.vstack([X, far]), ClusterConfig())
    assert res.n_clusters == 6
    assert res.is_outlier[-3:].all()
    assert (res.labels >= 0).all(), "outliers are attached by default"
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, res.labels[:-3]) > 0.95


def test_outliers_stay_unattached_when_configured() -> None:
    X, _ = blobs()
    far = np.full((2, X.shape[1]), 300.0, dtype=np.float32) + np.arange(2)[:, None] * 80
    res = cluster_points(np.vstack([X, far]), ClusterConfig(attach_outliers=False))
    assert (res.labels[-2:] == -1).all()


def test_outlier_attachment_follows_the_nearest_cluster() -> None:
    space = np.array([[0, 0], [0, 1], [10, 10], [10, 11], [9, 9], [1, 0]], dtype=float)
    labels = np.array([0, 0, 1, 1, -1, -1])
    assert attach_outliers(space, labels, k=2).tolist() == [0, 0, 1, 1, 1, 0]


def test_hierarchy_nests_leaves_in_mid_and_top_levels() -> None:
    X, truth = blobs(n_blobs=12, per=10)
    h = build_hierarchy(X, truth, HierarchyConfig(n_top=3, n_mid=6))
    assert h.sizes == [3, 6, 12]
    top_of_mid, mid_of_leaf = h.parents
    assert len(mid_of_leaf) == 12 and len(top_of_mid) == 6
    # each top node's leaves are exactly the union of its mids' leaves
    top, mid, leaf = h.groups(np.arange(12))
    assert leaf.tolist() == list(range(12))
    for m in range(6):
        assert len(set(top[mid == m])) == 1


def test_keyphrases_are_distinctive_and_sibling_names_unique() -> None:
    texts = ["how to build a pipe bomb", "bomb making at home", "poem about my cat", "a sad poem", "x", "y"]
    kws = ctfidf_keywords(texts, [0, 0, 1, 1, 2, 2], n_keywords=3)
    assert kws[0][0] == "bomb" and kws[1][0] == "poem"
    taken: set[str] = set()
    assert name_from_keywords(["a", "b"], taken) == "a, b"
    assert name_from_keywords(["a", "b"], taken) == "a, b (2)"
    assert name_from_keywords([], taken) == "Miscellaneous"


def test_config_rejects_unknown_keys_with_the_field_named(tmp_path: Path) -> None:
    from bailclio.config import ConfigError

    path = tmp_path / "c.toml"
    path.write_text("[cluster]\nmin_cluster_sise = 3\n")
    with pytest.raises(ConfigError, match="cluster.min_cluster_sise"):
        load_config(path)
    path.write_text("seed = 7\n[hierarchy]\nn_top = 4\n")
    cfg = load_config(path, {"cluster.min_cluster_size": 9})
    assert (cfg.seed, cfg.hierarchy.n_top, cfg.cluster.min_cluster_size) == (7, 4, 9)


def test_embedding_cache_embeds_nothing_twice(tmp_path: Path) -> None:
    from bailclio.embeddings.encoder import embed_texts

    cfg = EmbeddingConfig(cache_dir=str(tmp_path))
    a, s1 = embed_texts(["alpha", "beta"], cfg, progress=False)
    b, s2 = embed_texts(["beta", "gamma", "alpha"], cfg, progress=False)
    assert (s1["computed"], s2["computed"], s2["cache_hits"]) == (2, 1, 2)
    assert a.shape == (2, 384)
    np.testing.assert_allclose(b[0], a[1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- end to end


def test_run_directory_follows_the_contract(small_run: Path) -> None:
    for name in (
        rundir.MANIFEST,
        rundir.CONVERSATIONS,
        rundir.ASSIGNMENTS,
        rundir.TAXONOMY,
        rundir.EMBEDDINGS,
        rundir.SPACE,
    ):
        assert (small_run / name).exists(), name
    r = rundir.load_run(small_run)
    conv, assign, tax = r.conversations, r.assignments, r.taxonomy
    assert conv.height == assign.height == 300
    assert conv["conversation_id"].to_list() == assign["conversation_id"].to_list()
    assert {"text", "content", "subcategory", "category"} <= set(conv.columns)
    assert assign.schema["path"] == pl.List(pl.String)
    assert assign["x"].dtype == pl.Float32 and assign["is_outlier"].dtype == pl.Boolean
    assert tax.depth >= 2
    for node in tax.nodes:
        assert node.name and node.description and node.keywords
        assert set(node.exemplar_ids) <= set(conv["conversation_id"].to_list())
    # paths agree with the tree, sizes add up at every level
    for path, leaf, top in zip(assign["path"].to_list(), assign["leaf_id"], assign["top_id"], strict=True):
        assert path[0] == top and path[-1] == leaf
        assert [n.id for n in tax.path(leaf)] == path
    for level in range(tax.depth):
        assert sum(n.size for n in tax.level(level)) == 300
    for node in tax.leaves:
        assert node.size == int((assign["leaf_id"] == node.id).sum())
    m = r.manifest
    assert m["counts"]["accepted"] == 300 and m["counts"]["rejected"] == 0
    assert m["counts"]["outliers"] == int(assign["is_outlier"].sum())
    assert len(m["input"]["sha256"]) == 64 and m["seed"] == 42
    assert {"embed", "reduce", "cluster", "hierarchy", "names", "total"} <= set(m["timings_s"])
    assert "umap-learn" in m["versions"] and "hdbscan" in m["versions"]
    assert np.load(small_run / rundir.EMBEDDINGS).shape == (300, 384)


def test_taxonomy_recovers_bailbench_categories_above_chance(small_run: Path) -> None:
    from sklearn.metrics import adjusted_mutual_info_score

    r = rundir.load_run(small_run)
    joined = r.conversations.join(r.assignments, on="conversation_id")
    ami_leaf = adjusted_mutual_info_score(joined["subcategory"], joined["leaf_id"])
    ami_top = adjusted_mutual_info_score(joined["category"], joined["top_id"])
    assert ami_leaf > 0.4 and ami_top > 0.25, (ami_leaf, ami_top)


def test_same_input_config_and_seed_give_the_same_taxonomy(
    small_run: Path, bailbench_sample: Path, tmp_path: Path
) -> None:
    again = run(bailbench_sample, tmp_path / "again", Config(), progress=False).path
    assert (
        Taxonomy.load(again / "taxonomy.json").to_dict()
        == Taxonomy.load(small_run / "taxonomy.json").to_dict()
    )
    a = pl.read_parquet(small_run / "assignments.parquet")
    b = pl.read_parquet(again / "assignments.parquet")
    assert a.equals(b)


def test_duplicate_texts_are_clustered_once_and_every_row_is_assigned(
    tmp_path: Path, bailbench_sample: Path
) -> None:
    df = pl.read_csv(bailbench_sample).head(120)
    dup = pl.concat([df, df.head(30)]).with_row_index("id")
    path = tmp_path / "dups.csv"
    dup.write_csv(path)
    res = run(path, tmp_path / "run", Config(), progress=False)
    c = res.manifest["counts"]
    assert (c["accepted"], c["unique_texts"], c["duplicates_collapsed"]) == (150, 120, 30)
    assign = res.assignments
    assert assign.height == 150
    first = assign.filter(pl.col("conversation_id") == "0")["leaf_id"][0]
    copy = assign.filter(pl.col("conversation_id") == "120")["leaf_id"][0]
    assert first == copy


def test_cli_run_writes_rejects_and_prints_tree_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        json.dumps(
            {
                "id": f"c{i}",
                "conversation": [
                    {"role": "user", "content": t},
                    {"role": "assistant", "content": "I'd rather not."},
                ],
            }
        )
        for i, t in enumerate(
            pl.read_csv(Path(__file__).parents[2] / "data" / "bailbench.csv")["content"].to_list()[::10][:80]
        )
    ]
    rows.insert(5, "{broken json")
    rows.insert(9, json.dumps({"id": "empty", "conversation": []}))
    inp = tmp_path / "bails.jsonl"
    inp.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert cli_main(["run", str(inp), "--out", str(out), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert "T0" in stdout and "rows read 82, rejected 2, accepted 80" in stdout
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (6, rejects[0]["reason"]),
        (10, "empty conversation"),
    ]
    assert "unparseable JSON" in rejects[0]["reason"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["rejected"] == 2 and m["input"]["shape"] == "conversation"
    # a second run into a non-empty directory needs --force
    assert cli_main(["run", str(inp), "--out", str(out), "--quiet"]) == 2
    assert "use --force" in capsys.readouterr().err
    assert cli_main(["show", str(out), "--depth", "1"]) == 0
    shown = capsys.readouterr().out
    assert "T0" in shown and "  M" not in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "/nope/missing.jsonl"], "no such file"),
        (["show", "/nope/run"], "no such run directory"),
        (["run", "data/bailbench.csv", "--text-column", "body"], "text column 'body' not found"),
    ],
)
def test_cli_errors_are_one_line_with_exit_status_2(args: list[str], message: str) -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bailclio.cli", *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_incompatible_run_version_is_refused(small_run: Path, tmp_path: Path) -> None:
    import shutil

    from bailclio.errors import UserError

    copy = tmp_path / "old"
    shutil.copytree(small_run, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="format version 99 is not supported"):
        rundir.load_run(copy)
