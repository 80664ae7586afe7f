"""Embed and place rows in a fitted run, batch by batch: the per-batch work of a sampled run.

A :class:`Placer` holds what placement needs from the run that was fitted (its reference vectors,
their leaves, map and clustering-space coordinates and the calibrated distance threshold) in a
picklable :class:`PlacerState`, so the same object runs in this process (the local engine) or in
Ray actors on other machines (:mod:`bailclio.scale_ray`). Each batch is embedded through the
fitted Taxonomer's embedder (through the shared cache) and placed by
:func:`bailclio.taxonomy.placement.place`, the placement of ``Taxonomer.place`` and ``bailclio
assign``: a similarity-weighted vote of the 10 nearest fitted rows picks the leaf.

A placed row always gets the winning leaf, as HDBSCAN noise is attached in a fitted run; a row
farther from its neighbours than the abstention threshold (the fitted rows' own 95th percentile), or whose
neighbours are mostly outliers, is flagged ``is_outlier``. Its map coordinates ``x, y`` and its
clustering-space row are the weighted mean of its neighbours'; its ``outlier_score`` is their
weighted mean score (1 beyond the threshold).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bailclio.taxonomy.placement import (
    DEFAULT_K,
    DEFAULT_QUANTILE,
    Calibration,
    Reference,
    calibrate,
    place,
    reference,
    run_embedding_config,
)

if TYPE_CHECKING:
    from bailclio.rundir import Run

# Columns of a placed batch besides ``row``: one value per row, then the two vector columns.
SCALAR_COLUMNS = ("leaf", "is_outlier", "outlier_score", "x", "y", "distance", "confidence", "beyond")
VECTOR_COLUMNS = ("vector", "space")


@dataclass
class PlacerState:
    reference: Reference  # ``run`` is dropped: only arrays travel
    space: np.ndarray  # the fitted rows' clustering-space coordinates, aligned with the reference
    outlier_score: np.ndarray
    calibration: Calibration
    k: int
    embedder: Any  # the fitted Taxonomer's embedder (``embed(texts, progress) -> (vectors, stats)``)

    @property
    def threshold(self) -> float:
        return self.calibration.threshold


def placer_state(
    run: str | Path | Run,
    *,
    vectors: np.ndarray | None = None,
    space: np.ndarray | None = None,
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    embedder: Any | None = None,
) -> PlacerState:
    """Everything placement needs from a fitted run (a directory, or a :class:`Run` with its
    row-aligned ``vectors`` and ``space`` in memory), calibrated once. A sampled run is
    referenced by its fitted rows. ``embedder``: the fitted Taxonomer's (default: the run's
    sentence-transformers model)."""
    from bailclio import rundir
    from bailclio.components import SentenceTransformerEmbedder

    if not isinstance(run, rundir.Run):
        run = rundir.load_run(run, curated=False)
    ref = reference(run, vectors=vectors)
    space = np.load(run.file(rundir.SPACE)) if space is None else space
    space = np.asarray(space, dtype=np.float32)
    scores = run.assignments["outlier_score"].to_numpy().astype(np.float32)
    if "fitted" in run.assignments.columns:
        keep = run.assignments["fitted"].fill_null(True).to_numpy()
        space, scores = space[keep], scores[keep]
    cal = calibrate(ref, k, quantile)
    embedder = embedder or SentenceTransformerEmbedder(run_embedding_config(run))
    return PlacerState(dataclasses.replace(ref, run=None), space, scores, cal, k, embedder)  # type: ignore[arg-type]


class Placer:
    """``placer(texts)`` -> the placed batch as arrays (see :data:`SCALAR_COLUMNS`)."""

    def __init__(self, state: PlacerState) -> None:
        self.state = state
        self.stats = {"texts": 0, "cache_hits": 0, "computed": 0, "seconds": 0.0, "place_seconds": 0.0}

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        st = self.state
        uniq: dict[str, int] = {}
        inverse = np.fromiter(
            (uniq.setdefault(t, len(uniq)) for t in texts), dtype=np.int64, count=len(texts)
        )
        X, stats = st.embedder.embed(list(uniq), progress=False)
        for key in ("cache_hits", "computed", "seconds"):
            self.stats[key] += stats.get(key, 0)
        self.stats["texts"] += len(texts)
        t0 = time.perf_counter()
        p = place(st.reference, X, k=st.k, calibration=st.calibration)
        w = np.clip(p.similarity, 1e-6, None)
        w = w / w.sum(axis=1, keepdims=True)
        space = np.einsum("nk,nkd->nd", w, st.space[p.neighbours])
        score = np.where(p.unassigned, 1.0, (w * st.outlier_score[p.neighbours]).sum(axis=1))
        out = {
            "leaf": p.winner.astype(np.int32),
            "is_outlier": p.is_outlier,
            "outlier_score": score.astype(np.float32),
            "x": p.xy[:, 0],
            "y": p.xy[:, 1],
            "distance": p.distance,
            "confidence": p.confidence,
            "beyond": p.unassigned,
            "vector": X,
            "space": space.astype(np.float32),
        }
        self.stats["place_seconds"] += time.perf_counter() - t0
        return {name: value[inverse] for name, value in out.items()}


def placed_table(rows: np.ndarray, placed: dict[str, np.ndarray]) -> Any:
    """A placed batch as an Arrow table: ``row`` (index among the accepted rows), the scalar
    columns and the two vector columns as fixed-size lists."""
    import pyarrow as pa

    cols: dict[str, Any] = {"row": pa.array(np.asarray(rows, dtype=np.int64))}
    for name in SCALAR_COLUMNS:
        cols[name] = pa.array(placed[name])
    for name in VECTOR_COLUMNS:
        m = np.ascontiguousarray(placed[name], dtype=np.float32)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])
    return pa.table(cols)


def vectors_of(table: Any, name: str) -> np.ndarray:
    """A fixed-size-list column of an Arrow table as a 2-D float32 array."""
    col = table.column(name).combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)
