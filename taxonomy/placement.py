"""Placing rows in a fitted run: the one placement of bailclio (``Taxonomer.transform``,
``bailclio assign``, the sampled run's :class:`~bailclio.placer.Placer`, ``diff``).

Two questions are asked of each new row, in two spaces:

* **Does it belong to the run at all?** The mean cosine distance from the row to its k nearest run
  rows, in the embedding space as embedded (unit vectors, not centred). Rows farther than the
  calibrated threshold are left unassigned (abstention). Centring would remove the direction the
  run's rows share, which is exactly what an off-topic text lacks, so the check is made before it.
* **Where does it go?** In the run's centred space (its corpus mean removed, as the run's vectors
  were when they were clustered: :func:`bailclio.reduce.center_vectors`), either ``knn`` (default:
  the k nearest run rows vote for their leaf, weighted by similarity; ``confidence`` is the winning
  leaf's share of the vote) or ``centroid`` (the nearest leaf centroid; ``confidence`` is the margin
  to the second, ``1 - d1 / d2``).

The threshold is calibrated on in-distribution data only: the ``quantile`` (default 0.95) of the
same distance for the run's own rows, each left out of its own neighbours, so that about that share
of new rows from the run's distribution is placed (``expected_placed``). Map coordinates ``x, y``
are the similarity-weighted mean of the k nearest run rows' coordinates; ``is_outlier`` is true for
unassigned rows and for rows whose nearest run rows are mostly outliers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from bailclio.errors import UserError

if TYPE_CHECKING:
    from bailclio.config import EmbeddingConfig
    from bailclio.rundir import Run

log = logging.getLogger("bailclio")

METHODS = ("knn", "centroid")
DEFAULT_K = 10
DEFAULT_QUANTILE = 0.95
# where a run has too few rows to calibrate on: a cosine distance beyond which texts rarely share
# a topic (MiniLM-style models)
UNCALIBRATED_THRESHOLD = 0.6
# cosine at or above which a reference row counts as the row placed itself (``exclude_identical``)
IDENTICAL = 1.0 - 1e-5


@dataclass
class Reference:
    """The run's side of the placement, computed once per run."""

    run: Run
    vectors: np.ndarray  # centred + normalised run vectors [n, d] (where a row goes)
    mean: np.ndarray | None  # the corpus mean subtracted before normalising (None: not centred)
    leaf_ids: list[str]
    leaf_index: np.ndarray  # index into ``leaves`` per run row
    leaves: list[str]
    is_outlier: np.ndarray
    xy: np.ndarray
    model_key: str
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    raw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))  # as embedded, unit


@dataclass
class Calibration:
    threshold: float  # mean cosine distance to the k nearest run rows beyond which a row is unassigned
    expected_placed: float  # share of the run's own rows (left out) within it: in-distribution rows placed
    quantile: float
    k: int


@dataclass
class Placement:
    leaf_ids: list[str | None]
    distance: np.ndarray
    confidence: np.ndarray
    unassigned: np.ndarray
    is_outlier: np.ndarray
    xy: np.ndarray
    threshold: float
    expected_placed: float = float("nan")
    # before the threshold: the leaf index each row would get, and its neighbours' outlier share
    winner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    neighbour_outlier: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # [rows, leaves]: the kNN similarity vote and the cosine similarity to each leaf centroid
    votes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    centroid_sim: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # [rows, k]: the k nearest run rows (indices into the reference) and their similarity
    neighbours: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    similarity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


def normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (X / norms).astype(np.float32)


def run_embedding_config(run: Run, model_override: str | None = None) -> EmbeddingConfig:
    """The run's embedding settings; a different ``model_override`` is refused."""
    from bailclio.config import EmbeddingConfig
    from bailclio.embeddings.encoder import model_key

    raw = run.manifest.get("config", {}).get("embedding", {})
    cfg = EmbeddingConfig.model_validate(raw)
    run_key = run.manifest.get("embedding", {}).get("model_key") or model_key(cfg)
    if model_override is not None:
        other = cfg.model_copy(update={"model": model_override})
        if model_key(other) != run_key:
            raise UserError(
                f"--embedding-model '{model_override}' is not the run's embedding model "
                f"('{cfg.model}'); new conversations must be embedded in the run's space"
            )
    return cfg


def reference(run: Run, vectors: np.ndarray | None = None) -> Reference:
    """The run's vectors (``vectors``, else its embeddings file), centred as the run did, and
    its leaves indexed. A run fitted on a sample (an assignments column ``fitted``) is referenced
    by its fitted rows only: the rows its taxonomy was built on."""
    from bailclio import rundir

    X = (rundir.read_embeddings(run) if vectors is None else vectors).astype(np.float32)
    if X.shape[0] != run.assignments.height:
        raise UserError(
            f"{run.path}: {X.shape[0]} vectors for {run.assignments.height} conversations; the run is damaged"
        )
    assignments = run.assignments
    if "fitted" in assignments.columns:
        keep = assignments["fitted"].fill_null(True).to_numpy()
        X, assignments = X[keep], assignments.filter(pl.Series(keep))
    center = bool(run.manifest.get("config", {}).get("reduce", {}).get("center", True))
    mean = None
    if center and X.shape[0] > 1:
        # the run centred its distinct texts; duplicates repeat rows here, so use the unique rows
        mean = np.unique(X, axis=0).mean(axis=0).astype(np.float32)
    leaf_ids = assignments["leaf_id"].to_list()
    leaves = sorted(set(leaf_ids))
    pos = {lf: i for i, lf in enumerate(leaves)}
    leaf_index = np.array([pos[lf] for lf in leaf_ids], dtype=np.int64)
    centred = normalise(X - mean) if mean is not None else normalise(X)
    centroids = np.zeros((len(leaves), X.shape[1]), dtype=np.float32)
    np.add.at(centroids, leaf_index, centred)
    return Reference(
        run=run,
        vectors=centred,
        mean=mean,
        leaf_ids=leaf_ids,
        leaf_index=leaf_index,
        leaves=leaves,
        is_outlier=np.asarray(assignments["is_outlier"].to_list(), dtype=bool),
        xy=np.column_stack([assignments["x"].to_numpy(), assignments["y"].to_numpy()]).astype(np.float32),
        model_key=_model_key(run),
        centroids=normalise(centroids),
        raw=normalise(X),
    )


def _model_key(run: Run) -> str:
    from bailclio.embeddings.encoder import model_key

    return run.manifest.get("embedding", {}).get("model_key") or model_key(run_embedding_config(run))


def check_dimension(ref: Reference, X: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[1] != ref.raw.shape[1]:
        raise UserError(
            f"new vectors have dimension {X.shape[-1]} but the run's have {ref.raw.shape[1]}: "
            "they were embedded with a different model"
        )


def centred(ref: Reference, X: np.ndarray) -> np.ndarray:
    """New vectors (as embedded) in the run's centred space."""
    check_dimension(ref, X)
    X = X.astype(np.float32)
    return normalise(X - ref.mean) if ref.mean is not None else normalise(X)


def nearest(
    Q: np.ndarray,
    R: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    exclude_identical: bool = False,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``R`` most cosine-similar to each row of ``Q`` (unit vectors): their
    indices and similarities, best first. ``exclude_self`` leaves out row i of ``R`` for row i of
    ``Q`` (``Q`` is ``R``); ``exclude_identical`` leaves out rows identical to the query."""
    n = Q.shape[0]
    k = max(1, min(k, R.shape[0] - (1 if exclude_self else 0)))
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        S = Q[s : s + chunk] @ R.T
        if exclude_self:
            rows = np.arange(S.shape[0])
            S[rows, s + rows] = -np.inf
        if exclude_identical:
            S[S >= IDENTICAL] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        sim[s : s + chunk] = np.take_along_axis(ps, order, axis=1)
    return idx, sim


def knn_distance(sim: np.ndarray) -> np.ndarray:
    """Mean cosine distance to the k nearest rows (from their similarities)."""
    return np.clip(1.0 - sim, 0.0, 2.0).mean(axis=1)


def calibrate(ref: Reference, k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE) -> Calibration:
    """The abstention threshold: the ``quantile`` of the run's own rows' kNN distance, each row
    left out of its neighbours (a fixed :data:`UNCALIBRATED_THRESHOLD`, with a warning, where the
    run has too few rows to measure)."""
    if not 0.0 < quantile <= 1.0:
        raise UserError(f"--threshold-quantile must be in (0, 1], got {quantile}")
    if quantile >= 1.0:
        return Calibration(float("inf"), 1.0, quantile, k)
    if ref.raw.shape[0] < 2:
        log.warning(
            f"[bailclio] warning: the distance threshold cannot be calibrated (the run has "
            f"{ref.raw.shape[0]} row); rows farther than {UNCALIBRATED_THRESHOLD} (cosine distance) "
            "from the run are left unassigned"
        )
        return Calibration(UNCALIBRATED_THRESHOLD, float("nan"), quantile, k)
    _, sim = nearest(ref.raw, ref.raw, k, exclude_self=True)
    d = knn_distance(sim)
    threshold = float(np.quantile(d, quantile))
    return Calibration(threshold, float((d <= threshold).mean()), quantile, k)


def place(
    ref: Reference,
    X: np.ndarray,
    *,
    method: str = "knn",
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    calibration: Calibration | None = None,
    exclude_identical: bool = False,
) -> Placement:
    """Place new vectors ``X`` (as embedded, by the run's model). A given ``calibration`` (from
    :func:`calibrate`) saves calibrating again for every batch. ``exclude_identical`` leaves out
    run rows identical to the row placed, so that a run's own rows are placed as if they were new
    (as :func:`calibrate` measures them)."""
    if method not in METHODS:
        raise UserError(f"unknown placement method '{method}' (use {', '.join(METHODS)})")
    check_dimension(ref, X)
    cal = calibration or calibrate(ref, k, quantile)
    n = X.shape[0]
    _, raw_sim = nearest(normalise(X.astype(np.float32)), ref.raw, k, exclude_identical=exclude_identical)
    distance = knn_distance(raw_sim)
    Q = centred(ref, X)
    idx, sim = nearest(Q, ref.vectors, k, exclude_identical=exclude_identical)
    w = np.clip(sim, 1e-6, None)
    xy = (ref.xy[idx] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    outlier_vote = (ref.is_outlier[idx] * w).sum(axis=1) / w.sum(axis=1)
    votes = np.zeros((n, len(ref.leaves)), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(n), idx.shape[1]), ref.leaf_index[idx].ravel()), w.ravel())
    csim = Q @ ref.centroids.T
    if method == "knn":
        best = votes.argmax(axis=1)
        confidence = votes[np.arange(n), best] / votes.sum(axis=1)
    else:
        order = np.argsort(-csim, axis=1)
        best = order[:, 0]
        d1 = 1.0 - csim[np.arange(n), best]
        if csim.shape[1] > 1:
            d2 = 1.0 - csim[np.arange(n), order[:, 1]]
            confidence = np.clip(1.0 - d1 / np.maximum(d2, 1e-9), 0.0, 1.0)
        else:
            confidence = np.ones(n)
    unassigned = distance > cal.threshold
    leaf_ids = [None if u else ref.leaves[b] for u, b in zip(unassigned, best, strict=True)]
    return Placement(
        leaf_ids=leaf_ids,
        distance=distance.astype(np.float32),
        confidence=confidence.astype(np.float32),
        unassigned=unassigned,
        is_outlier=unassigned | (outlier_vote > 0.5),
        xy=xy.astype(np.float32),
        threshold=cal.threshold,
        expected_placed=cal.expected_placed,
        winner=best.astype(np.int64),
        neighbour_outlier=outlier_vote > 0.5,
        votes=votes,
        centroid_sim=csim,
        neighbours=idx,
        similarity=sim,
    )


def self_agreement(ref: Reference, method: str = "knn", k: int = DEFAULT_K) -> np.ndarray:
    """Leave-one-out placement of the run's own rows: the leaf index each row would be given if
    it were new (its own vector left out of the neighbours or of its leaf's centroid)."""
    X = ref.vectors
    n = X.shape[0]
    if method == "knn":
        idx, sim = nearest(X, X, k, exclude_self=True)
        w = np.clip(sim, 1e-6, None)
        votes = np.zeros((n, len(ref.leaves)), dtype=np.float64)
        np.add.at(votes, (np.repeat(np.arange(n), idx.shape[1]), ref.leaf_index[idx].ravel()), w.ravel())
        return votes.argmax(axis=1)
    sums = np.zeros((len(ref.leaves), X.shape[1]), dtype=np.float64)
    np.add.at(sums, ref.leaf_index, X)
    raw = X @ sums.T
    sims = raw / np.maximum(np.linalg.norm(sums, axis=1), 1e-9)
    rows = np.arange(n)
    own = ref.leaf_index
    rest_norm = np.linalg.norm(sums[own] - X, axis=1)
    sims[rows, own] = np.where(rest_norm > 1e-9, (raw[rows, own] - 1.0) / np.maximum(rest_norm, 1e-9), -1.0)
    return sims.argmax(axis=1)
