"""UMAP and HDBSCAN on the GPU through RAPIDS cuML, when it is installed and a GPU is visible.

``[reduce] backend`` and ``[cluster] backend`` are ``"auto"`` (cuML when :func:`available`, else
the CPU libraries), ``"cpu"`` or ``"cuml"`` (an error when cuML cannot run). The CPU path is the
unchanged umap-learn / hdbscan code in :mod:`bailclio.reduce` and :mod:`bailclio.cluster`; nothing
here is imported unless cuML is used. Install with the ``gpu`` extra (``cuml-cu12``).

On the GPU the centred, unit-length vectors are reduced with euclidean distance (the same
neighbour order as cosine on unit vectors) and cuML's own nearest-neighbour graph; the map and
the clustering space are two seeded fits, as on the CPU. cuML's results are not bit-identical to
umap-learn's, so a GPU run and a CPU run of the same input agree as two seeds do, not exactly
(``bench/gpu_check.sh`` measures the agreement).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from bailclio.errors import UserError


@lru_cache(maxsize=1)
def available() -> bool:
    """cuML imports and at least one CUDA device is visible."""
    try:
        import cuml  # noqa: F401
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return False
    try:
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def use_cuml(backend: str) -> bool:
    """Whether a stage configured with ``backend`` runs on cuML."""
    if backend == "cpu":
        return False
    if backend == "cuml":
        if not available():
            raise UserError("backend 'cuml' needs RAPIDS cuML and a visible GPU: pip install 'bailclio[gpu]'")
        return True
    return available()


def umap(X: np.ndarray, *, n_components: int, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    from cuml.manifold import UMAP

    model = UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric="euclidean",
        init="spectral",
        random_state=seed,
        output_type="numpy",
    )
    return np.asarray(model.fit_transform(np.ascontiguousarray(X, dtype=np.float32)), dtype=np.float32)


def hdbscan(space: np.ndarray, *, min_cluster_size: int, min_samples: int | None, method: str) -> Any:
    """A fitted cuML HDBSCAN (``labels_``, ``probabilities_`` as numpy)."""
    from cuml.cluster import HDBSCAN

    model = HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        cluster_selection_method=method,
        output_type="numpy",
    )
    model.fit(np.ascontiguousarray(space, dtype=np.float32))
    return model
