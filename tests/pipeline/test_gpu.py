"""The cuML path (bailclio.gpu): guarded, off without cuML, and wired to cuML's API when present.

No GPU is visible where these tests run, so the wiring is checked with a stand-in ``cuml``
package that has cuML's constructors and attributes (``cuml.manifold.UMAP``,
``cuml.cluster.HDBSCAN``, ``output_type``, ``labels_``, ``probabilities_``) and runs umap-learn
and hdbscan underneath; ``bench/gpu_check.sh`` runs the real cuML on a GPU machine.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from bailclio import gpu
from bailclio.cluster import cluster_points
from bailclio.config import ClusterConfig, ReduceConfig
from bailclio.errors import UserError
from bailclio.reduce import reduce_vectors


def _blobs(n_per: int = 60, k: int = 4, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(k, dim)) * 5
    return np.vstack([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)


@pytest.fixture
def no_cuml(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuml", None)  # import cuml raises ImportError
    gpu.available.cache_clear()
    yield
    gpu.available.cache_clear()


@pytest.fixture
def stand_in_cuml(monkeypatch):
    """cuML's API over the CPU libraries, and one visible 'device'."""
    import hdbscan as cpu_hdbscan
    import umap as cpu_umap

    calls: list[tuple[str, dict]] = []

    class UMAP:
        def __init__(self, *, n_components, n_neighbors, min_dist, metric, init, random_state, output_type):
            assert output_type == "numpy"
            calls.append(("UMAP", dict(n_components=n_components, metric=metric)))
            self.inner = cpu_umap.UMAP(
                n_components=n_components,
                n_neighbors=n_neighbors,
                min_dist=min_dist,
                metric=metric,
                init=init,
                random_state=random_state,
            )

        def fit_transform(self, X):
            assert X.dtype == np.float32 and X.flags["C_CONTIGUOUS"]
            return self.inner.fit_transform(X)

    class HDBSCAN:
        def __init__(self, *, min_cluster_size, min_samples, cluster_selection_method, output_type):
            calls.append(("HDBSCAN", dict(min_cluster_size=min_cluster_size)))
            self.inner = cpu_hdbscan.HDBSCAN(
                min_cluster_size=min_cluster_size,
                min_samples=min_samples,
                cluster_selection_method=cluster_selection_method,
            )

        def fit(self, X):
            self.inner.fit(X)
            self.labels_ = self.inner.labels_
            self.probabilities_ = self.inner.probabilities_
            return self

    cuml = types.ModuleType("cuml")
    cuml.manifold = types.SimpleNamespace(UMAP=UMAP)
    cuml.cluster = types.SimpleNamespace(HDBSCAN=HDBSCAN)
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    for name, mod in {
        "cuml": cuml,
        "cuml.manifold": cuml.manifold,
        "cuml.cluster": cuml.cluster,
        "cupy": cupy,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    gpu.available.cache_clear()
    yield calls
    gpu.available.cache_clear()


def test_without_cuml_the_cpu_path_runs_and_asking_for_cuml_is_a_clear_error(no_cuml):
    assert not gpu.available()
    assert not gpu.use_cuml("auto") and not gpu.use_cuml("cpu")
    with pytest.raises(UserError, match="needs RAPIDS cuML"):
        gpu.use_cuml("cuml")
    space, xy, info = reduce_vectors(_blobs(), ReduceConfig(n_components=3), seed=0)
    assert "backend" not in info and "knn_s" in info and space.shape == (240, 3)
    assert "backend" not in cluster_points(space, ClusterConfig()).params


def test_with_cuml_and_a_gpu_auto_reduces_and_clusters_through_cuml(stand_in_cuml):
    space, xy, info = reduce_vectors(_blobs(), ReduceConfig(n_components=3), seed=0)
    assert info["backend"] == "cuml" and space.shape == (240, 3) and xy.shape == (240, 2)
    assert space.dtype == np.float32
    res = cluster_points(space, ClusterConfig())
    assert res.params["backend"] == "cuml" and res.n_clusters == 4
    assert [c[0] for c in stand_in_cuml] == ["UMAP", "UMAP", "HDBSCAN"]
    assert all(c[1]["metric"] == "euclidean" for c in stand_in_cuml[:2])  # unit vectors: cosine order


def test_backend_cpu_keeps_the_cpu_path_even_with_cuml(stand_in_cuml):
    _, _, info = reduce_vectors(_blobs(), ReduceConfig(n_components=3, backend="cpu"), seed=0)
    assert "backend" not in info and stand_in_cuml == []
