"""The one node matcher of bailclio (``diff`` and the explorer's Compare): which node of one
taxonomy is which node of another.

Nodes of one level are matched one-to-one (Hungarian algorithm) on a combined similarity,
``0.8 * cosine(centroids) + 0.2 * jaccard(name words)``. Centroids are the mean embedding of each
node's rows, after removing the mean of both runs' vectors so that the shared "request to an
assistant" direction does not make every pair look alike. A run matched with itself matches node
by node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from bailclio.errors import UserError

if TYPE_CHECKING:
    from bailclio.rundir import Run

CENTROID_WEIGHT = 0.8
DEFAULT_THRESHOLD = 0.35  # least combined similarity of a match


@dataclass
class NodeSimilarity:
    """Similarities of nodes ``a_ids`` (rows) and ``b_ids`` (columns): ``combined`` is what
    matching uses, ``centroid`` the centred cosine, ``names`` the name-word overlap."""

    combined: np.ndarray
    centroid: np.ndarray
    names: np.ndarray


def run_vectors(run: Run) -> np.ndarray:
    """The run's row-aligned embeddings, checked against its rows."""
    from bailclio import rundir

    X = rundir.read_embeddings(run).astype(np.float32)
    if X.shape[0] != run.assignments.height:
        raise UserError(f"{run.path}: {X.shape[0]} vectors for {run.assignments.height} conversations")
    return X


def name_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def centroids(run: Run, X: np.ndarray, mean: np.ndarray, level: int) -> dict[str, np.ndarray]:
    """Unit mean vector of each node of ``level`` (rows centred by ``mean`` and normalised)."""
    ids = np.array(run.level_ids(level), dtype=object)
    Xc = X - mean
    Xc /= np.maximum(np.linalg.norm(Xc, axis=1, keepdims=True), 1e-9)
    out = {}
    for node in sorted(set(ids.tolist()) - {None}):
        c = Xc[ids == node].mean(axis=0)
        out[node] = c / max(float(np.linalg.norm(c)), 1e-9)
    return out


def node_similarity(
    run_a: Run,
    run_b: Run,
    level: int,
    a_ids: list[str],
    b_ids: list[str],
    vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> NodeSimilarity:
    """``0.8 * cosine(centred centroids) + 0.2 * jaccard(name words)`` of the nodes ``a_ids`` of
    ``run_a`` and ``b_ids`` of ``run_b`` at ``level`` (``vectors``: the runs' embeddings when
    already loaded); a run with itself matches node by node."""
    shape = (len(a_ids), len(b_ids))
    if run_a.path.resolve() == run_b.path.resolve():
        same = np.array([[1.0 if x == y else 0.0 for y in b_ids] for x in a_ids], dtype=np.float64)
        same = same.reshape(shape)
        return NodeSimilarity(same, same.copy(), same.copy())
    Xa, Xb = vectors if vectors is not None else (run_vectors(run_a), run_vectors(run_b))
    if Xa.shape[1] != Xb.shape[1]:
        raise UserError(
            f"{run_a.path} and {run_b.path} were embedded with different models "
            f"(dimensions {Xa.shape[1]} and {Xb.shape[1]}); their taxonomies cannot be matched"
        )
    mean = np.concatenate([Xa, Xb]).mean(axis=0)
    ca, cb = centroids(run_a, Xa, mean, level), centroids(run_b, Xb, mean, level)
    dim = Xa.shape[1]
    A = np.stack([ca.get(i, np.zeros(dim, np.float32)) for i in a_ids]) if a_ids else np.zeros((0, dim))
    B = np.stack([cb.get(i, np.zeros(dim, np.float32)) for i in b_ids]) if b_ids else np.zeros((0, dim))
    cos = (A @ B.T).astype(np.float64).reshape(shape)
    words_a = [name_words(run_a.taxonomy.by_id[i].name) for i in a_ids]
    words_b = [name_words(run_b.taxonomy.by_id[i].name) for i in b_ids]
    names = np.array([[jaccard(x, y) for y in words_b] for x in words_a], dtype=np.float64).reshape(shape)
    return NodeSimilarity(CENTROID_WEIGHT * cos + (1 - CENTROID_WEIGHT) * names, cos, names)


def match_nodes(sim: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one matches maximising total similarity, keeping pairs at or above ``threshold``."""
    if sim.size == 0:
        return []
    rows, cols = linear_sum_assignment(-sim)
    return [
        (int(r), int(c), float(sim[r, c])) for r, c in zip(rows, cols, strict=True) if sim[r, c] >= threshold
    ]
