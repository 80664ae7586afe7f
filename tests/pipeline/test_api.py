"""The Python API: a Taxonomer fitted in memory, saved, loaded and placing new rows; stages swapped
by one argument; precomputed vectors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bailclio import Taxonomer
from bailclio.components import KeyphraseNamer, KMeansClusterer
from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.rundir import load_run
from bailclio.stages import Clusterer, Embedder, HierarchyBuilder, Namer, Reducer
from bailclio.taxonomy.model import Taxonomy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample(bailbench_sample: Path) -> pl.DataFrame:
    return pl.read_csv(bailbench_sample)


def test_import_bailclio_loads_no_heavy_library() -> None:
    code = (
        "import sys, bailclio; assert bailclio.Taxonomer.__name__ == 'Taxonomer'; "
        "heavy = [m for m in ('torch', 'umap', 'hdbscan', 'sentence_transformers', 'sklearn', 'streamlit') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_default_stages_satisfy_the_stage_interfaces() -> None:
    tx = Taxonomer()
    assert isinstance(tx.embedder, Embedder) and isinstance(tx.reducer, Reducer)
    assert isinstance(tx.clusterer, Clusterer) and isinstance(tx.hierarchy_builder, HierarchyBuilder)
    assert isinstance(KeyphraseNamer(), Namer)


def test_fit_on_a_frame_builds_the_taxonomy_the_run_command_builds(
    sample: pl.DataFrame, small_run: Path, tmp_path: Path
) -> None:
    tx = Taxonomer(Config(), progress=False).fit(sample)
    ref = load_run(small_run)
    assert tx.taxonomy_ is not None and tx.assignments_ is not None
    assert tx.taxonomy_.to_dict() == ref.taxonomy.to_dict()
    assert tx.assignments_.equals(ref.assignments)
    saved = tx.save(tmp_path / "api-run")
    again = load_run(saved)
    assert again.taxonomy.to_dict() == ref.taxonomy.to_dict()
    assert again.assignments.equals(ref.assignments)
    assert again.manifest["input"]["source"] == "memory"
    assert set(again.manifest["counts"]) >= set(ref.manifest["counts"])
    with pytest.raises(UserError, match="not empty"):
        tx.save(saved)


def test_transform_places_rows_as_bailclio_assign_does(
    small_run: Path, sample: pl.DataFrame, tmp_path: Path
) -> None:
    from bailclio.cli import main

    new = sample.sample(40, seed=3).select("content").with_row_index("id")
    path = tmp_path / "new.csv"
    new.write_csv(path)
    assert main(["assign", str(small_run), str(path), "--out", str(tmp_path / "a.parquet"), "--quiet"]) == 0
    by_cli = pl.read_parquet(tmp_path / "a.parquet")
    placed = Taxonomer.load(small_run, progress=False).transform(new)
    assert placed.height == 40
    assert placed["conversation_id"].to_list() == by_cli["conversation_id"].to_list()
    assert placed["leaf_id"].to_list() == by_cli["leaf_id"].to_list()
    assert np.allclose(placed["distance"].to_numpy(), by_cli["distance"].to_numpy(), atol=1e-5)


def test_kmeans_replaces_hdbscan_with_one_argument(sample: pl.DataFrame, tmp_path: Path) -> None:
    from sklearn.cluster import KMeans

    texts = sample["content"].to_list()
    tx = Taxonomer(clusterer=KMeans(n_clusters=7, random_state=0, n_init="auto"), progress=False).fit(texts)
    assert tx.taxonomy_ is not None and tx.assignments_ is not None
    assert len(tx.taxonomy_.leaves) == 7  # KMeans gives exactly k non-empty clusters
    assert not tx.assignments_["is_outlier"].any()
    assert "SklearnClusterer (KMeans)" in tx.manifest_["stages"]["clusterer"]
    assert tx.manifest_["resolved"]["cluster"]["n_clusters"] == 7
    # the adapter spelled out is the same clustering
    tx2 = Taxonomer(clusterer=KMeansClusterer(7, random_state=0), progress=False).fit(texts)
    assert tx2.assignments_ is not None
    assert tx2.assignments_["leaf_id"].to_list() == tx.assignments_["leaf_id"].to_list()
    run = load_run(tx.save(tmp_path / "kmeans"))
    assert len(run.taxonomy.leaves) == 7


def _blobs(n_per: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([c + 0.05 * rng.standard_normal((n_per, centres.shape[1])) for c in centres])


def test_precomputed_vectors_are_clustered_and_new_vectors_placed_by_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dim, n_per = 16, 40
    centres = 3.0 * np.eye(dim)[:4]
    X = _blobs(n_per, centres, rng).astype(np.float32)
    blob = np.repeat(np.arange(4), n_per)
    texts = [f"row {i} of group {b}" for i, b in enumerate(blob)]
    tx = Taxonomer(progress=False).fit(texts, embeddings=X)
    assert tx.manifest_["embedding"]["model_key"] == "precomputed"
    assign = tx.assignments_
    assert assign is not None and assign.height == len(texts)
    # far-apart groups never share a leaf
    for leaf in set(assign["leaf_id"].to_list()):
        members = blob[np.asarray(assign["leaf_id"].to_list()) == leaf]
        assert len(set(members.tolist())) == 1, leaf
    new = _blobs(5, centres, rng).astype(np.float32)
    placed = Taxonomer.load(tx.save(tmp_path / "pre"), progress=False).transform(
        [f"new {i}" for i in range(20)], embeddings=new, quantile=1.0
    )
    leaf_blob = {lf: int(b) for lf, b in zip(assign["leaf_id"].to_list(), blob, strict=True)}
    assert [leaf_blob[lf] for lf in placed["leaf_id"].to_list()] == np.repeat(np.arange(4), 5).tolist()
    with pytest.raises(UserError, match="precomputed"):
        tx.transform(["no vectors"])


def test_precomputed_vectors_must_match_the_rows() -> None:
    with pytest.raises(UserError, match="3 vectors for 2 input rows"):
        Taxonomer(progress=False).fit(["a", "b"], embeddings=np.zeros((3, 4)))


def test_rejected_rows_are_reported_and_their_vectors_skipped() -> None:
    rng = np.random.default_rng(1)
    X = _blobs(30, 3.0 * np.eye(8)[:2], rng).astype(np.float32)
    texts = [f"text {i}" for i in range(60)]
    texts[5] = ""  # rejected: its vector must not shift the others
    tx = Taxonomer(progress=False).fit(texts, embeddings=X)
    assert [r["line"] for r in tx.rejects_] == [6]
    assert tx.assignments_ is not None and tx.assignments_.height == 59
    assert tx.embeddings_ is not None
    assert np.allclose(tx.embeddings_[5], X[6])


def test_an_unfitted_taxonomer_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not fitted"):
        Taxonomer().save(tmp_path / "x")


def test_a_loaded_run_keeps_its_taxonomy(small_run: Path) -> None:
    tx = Taxonomer.load(small_run)
    assert isinstance(tx.taxonomy_, Taxonomy)
    assert tx.config.embedding.model == Config().embedding.model
    assert tx.path_ == small_run


class CountingEmbedder:
    """The default embedder, counting the texts it is asked for (a caller's own embedder)."""

    def __init__(self) -> None:
        from bailclio.components import SentenceTransformerEmbedder

        self.inner = SentenceTransformerEmbedder()
        self.texts = 0

    def embed(self, texts: list[str], *, progress: bool = True):
        self.texts += len(texts)
        return self.inner.embed(texts, progress=progress)


def test_a_custom_taxonomer_is_sampled_and_places_the_rest_with_its_own_embedder(
    bailbench_sample: Path, tmp_path: Path
) -> None:
    from bailclio.pipeline import run

    cfg = Config()
    cfg.scale.fit_sample = 120
    embedder = CountingEmbedder()
    result = run(
        bailbench_sample, tmp_path / "run", cfg, progress=False, taxonomer=Taxonomer(cfg, embedder=embedder)
    )
    counts = result.manifest["counts"]
    assert counts["fitted"] == 120 and counts["placed"] == counts["accepted"] - 120
    assert embedder.texts >= counts["accepted"]  # the sample to fit, then every placed row
    assert load_run(tmp_path / "run").assignments["fitted"].sum() == 120
