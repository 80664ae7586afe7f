"""The interfaces of the pipeline's stages: small protocols any object can satisfy.

A :class:`bailclio.Taxonomer` is configured with one object per stage. The defaults are in
:mod:`bailclio.components` (sentence-transformers, UMAP, HDBSCAN, Ward, c-TF-IDF keyphrases or
LLM names); anything with the same methods can take their place::

    >>> import numpy as np
    >>> from bailclio.cluster import clustering_from_labels
    >>> class Halves:                                  # a Clusterer: split the map at x = 0
    ...     def cluster(self, space):      # leaves are numbered from the largest
    ...         labels = (space[:, 0] > 0).astype(np.int64)
    ...         return clustering_from_labels(labels, space, params={"method": "halves"})
    >>> c = Halves().cluster(np.array([[-1.0, 0.0], [2.0, 1.0], [3.0, 0.5]]))
    >>> c.labels.tolist(), c.n_clusters, bool(c.is_outlier.any())
    ([1, 0, 0], 2, False)

The data the stages hand each other (:class:`Clustering`, :class:`Hierarchy`, :class:`NodeName`,
:class:`Naming`, :class:`NamingContext`) is defined here with the interfaces; the stage modules
(``cluster``, ``hierarchy``, ...) import it from here. This module imports no heavy library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

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
]


@dataclass
class Clustering:
    """A clusterer's answer: the leaf of every point, numbered 0..k-1 from the largest."""

    labels: np.ndarray  # leaf index per point, outliers attached (or -1 when not attached)
    raw_labels: np.ndarray  # HDBSCAN's labels, -1 = noise
    is_outlier: np.ndarray
    probabilities: np.ndarray
    n_clusters: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hierarchy:
    """Any number of levels, top first, leaves last. ``parents[d]`` maps each node of level
    ``d + 1`` to its parent's index at level ``d`` (so ``len(parents) == depth - 1``)."""

    parents: list[np.ndarray]
    n_leaves: int
    info: dict = field(default_factory=dict)  # why this depth and these sizes (for the manifest)

    @property
    def depth(self) -> int:
        return len(self.parents) + 1

    @property
    def sizes(self) -> list[int]:
        """Node count per level, top first."""
        return [int(self.parents[0].max()) + 1] + [len(p) for p in self.parents]

    def groups(self, leaf_labels: np.ndarray) -> list[np.ndarray]:
        """Per level (top first), the node index of each point given its leaf label."""
        out = [np.asarray(leaf_labels)]
        for parent in reversed(self.parents):
            out.append(parent[out[-1]])
        return out[::-1]


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
    """Points of the clustering space to leaves (:class:`Clustering`)."""

    def cluster(self, space: np.ndarray) -> Clustering: ...


@runtime_checkable
class HierarchyBuilder(Protocol):
    """Leaves to a tree: parent maps from the leaves up (:class:`Hierarchy`).

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
