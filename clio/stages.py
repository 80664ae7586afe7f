"""The interfaces of the pipeline's stages: small protocols any object can satisfy.

A :class:`bailclio.Taxonomer` is configured with one object per stage. The defaults are in
:mod:`bailclio.components` (sentence-transformers, UMAP, HDBSCAN, Ward, c-TF-IDF keyphrases or
LLM names); anything with the same methods can take their place::

    >>> import numpy as np
    >>> class Halves:                                  # a Clusterer: split the map at x = 0
    ...     def cluster(self, space):      # leaves are numbered from the largest
    ...         labels = (space[:, 0] > 0).astype(np.int64)
    ...         return clustering_from_labels(labels, space, params={"method": "halves"})
    >>> c = Halves().cluster(np.array([[-1.0, 0.0], [2.0, 1.0], [3.0, 0.5]]))
    >>> c.labels.tolist(), c.n_clusters, bool(c.is_outlier.any())
    ([1, 0, 0], 2, False)

This module imports no heavy library; the stage modules it describes are imported by the
components when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bailclio.cluster import Clustering
from bailclio.hierarchy import Hierarchy

__all__ = [
    "Clusterer",
    "Clustering",
    "Embedder",
    "Hierarchy",
    "HierarchyBuilder",
    "Namer",
    "Naming",
    "NamingContext",
    "NodeName",
    "Reducer",
    "clustering_from_labels",
]


@runtime_checkable
class Embedder(Protocol):
    """Texts to vectors. ``stats`` must hold ``model`` and ``model_key`` (what identifies the
    vector space: new rows are placed only with the same key)."""

    def embed(self, texts: list[str], *, progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]: ...


@runtime_checkable
class Reducer(Protocol):
    """Vectors to (clustering space, 2-D map coordinates, facts for the manifest)."""

    def reduce(self, vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]: ...


@runtime_checkable
class Clusterer(Protocol):
    """Points of the clustering space to leaves (:class:`~bailclio.cluster.Clustering`)."""

    def cluster(self, space: np.ndarray) -> Clustering: ...


@runtime_checkable
class HierarchyBuilder(Protocol):
    """Leaves to a tree: parent maps from the leaves up (:class:`~bailclio.hierarchy.Hierarchy`).

    A builder whose ``build`` also takes ``vectors=`` is given the embeddings (one row per point)."""

    def build(self, space: np.ndarray, leaf_labels: np.ndarray) -> Hierarchy: ...


@dataclass
class NodeName:
    """A node's name; ``description`` None means the keyphrase description is written;
    ``source`` (``"llm"``, ``"keyphrases"``, ``"fixed"``) is recorded as ``name_source`` when set."""

    name: str
    description: str | None = None
    source: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more for the node's record (grounding)


@dataclass
class NamingContext:
    """What a namer may read. Index 0 of every per-level list is the top level, the last the leaves.

    ``texts``, ``space`` and ``is_outlier`` are per distinct text (the units that were clustered);
    ``groups[level][i]`` is the node of text ``i`` at that level; ``keyphrases[level][node]`` holds
    ``name``, ``keywords`` and ``exemplars`` (indices into ``texts``) from c-TF-IDF, always
    computed, so a namer can fall back on them; ``fixed`` names nodes no namer may rename (the
    outlier leaf), as {(level, node): name}.
    """

    texts: list[str]
    space: np.ndarray
    leaf_labels: np.ndarray
    hierarchy: Hierarchy
    groups: list[np.ndarray]
    is_outlier: np.ndarray
    keyphrases: list[dict[int, dict[str, Any]]]
    fixed: dict[tuple[int, int], str] = field(default_factory=dict)
    # the vectors of ``texts`` and the embedder that made them (None for precomputed vectors), so
    # a namer can check names against members in the same space
    vectors: np.ndarray | None = None
    embed: Callable[[list[str]], np.ndarray] | None = None


@dataclass
class Naming:
    """A namer's answer: a :class:`NodeName` per node per level, and what it adds to
    ``taxonomy.json``'s metadata."""

    levels: list[dict[int, NodeName]]
    meta: dict[str, Any] = field(default_factory=dict)
    # a namer that also rebuilt the levels above the leaves (Clio's LLM hierarchy) returns the
    # new tree here; ``levels`` are then numbered as its nodes
    hierarchy: Hierarchy | None = None


@runtime_checkable
class Namer(Protocol):
    """Names every node of the hierarchy."""

    def name(self, ctx: NamingContext) -> Naming: ...


def describe_stage(stage: Any) -> str:
    """A short label for the manifest: the class name and, when it has one, its ``describe()``."""
    text = stage.describe() if hasattr(stage, "describe") else None
    return f"{type(stage).__module__}.{type(stage).__qualname__}" + (f" ({text})" if text else "")


def clustering_from_labels(
    labels: np.ndarray,
    space: np.ndarray,
    *,
    probabilities: np.ndarray | None = None,
    params: dict[str, Any] | None = None,
    attach: bool = True,
    neighbors: int = 10,
) -> Clustering:
    """A :class:`Clustering` from any labelling (``-1`` = noise): leaves renumbered 0..k-1 from
    the largest, noise flagged ``is_outlier`` and, with ``attach``, given the leaf of its nearest
    clustered neighbours as HDBSCAN's noise is."""
    raw_in = np.asarray(labels, dtype=np.int64)
    n = raw_in.shape[0]
    valid = raw_in[raw_in >= 0]
    raw = np.full(n, -1, dtype=np.int64)
    if len(valid):
        uniq, first, counts = np.unique(valid, return_index=True, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-counts[i], first[i]))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        raw[raw_in >= 0] = rank[np.searchsorted(uniq, valid)]
    is_outlier = raw < 0
    if not len(valid):
        out = np.zeros(n, dtype=np.int64)
    elif attach and is_outlier.any():
        from bailclio.cluster import attach_outliers

        out = attach_outliers(space, raw, neighbors)
    else:
        out = raw.copy()
    probs = np.where(is_outlier, 0.0, 1.0) if probabilities is None else np.asarray(probabilities)
    return Clustering(
        labels=out,
        raw_labels=raw,
        is_outlier=is_outlier,
        probabilities=probs,
        n_clusters=int(max(out.max(initial=-1), raw.max(initial=-1)) + 1),
        params=dict(params or {}),
    )
