"""The default stages, and a few alternatives, as objects satisfying :mod:`bailclio.stages`.

Each default is a thin adapter over its stage module's function, configured by the section of
:class:`~bailclio.config.Config` it reads, so ``Taxonomer(config)`` behaves exactly as
``bailclio run`` does:

===================  =================================  ==========================================
stage                default                            calls
===================  =================================  ==========================================
embedder             :class:`SentenceTransformerEmbedder`  :func:`bailclio.embeddings.encoder.embed_texts`
reducer              :class:`UMAPReducer`               :func:`bailclio.reduce.reduce_vectors`
clusterer            :class:`HDBSCANClusterer`          :func:`bailclio.cluster.cluster_points`
hierarchy builder    :class:`WardHierarchy`             :func:`bailclio.hierarchy.build_hierarchy`
namer                :class:`KeyphraseNamer`, or        the c-TF-IDF keyphrases
                     :class:`LLMNamer` with an LLM      :meth:`bailclio.llmnaming.stage.LLMStage.names`
===================  =================================  ==========================================

Alternatives: :class:`KMeansClusterer`, and :class:`SklearnClusterer` for any estimator with
``fit_predict`` (scikit-learn's, ``evoc.EVoC``, ...). A plain estimator passed as ``clusterer=``
is wrapped in :class:`SklearnClusterer`. Namers are also found by name (:func:`make_namer`) in
the registry ``bailclio.plugins.NAMERS``: ``"keyphrases"``, ``"llm"`` and any registered with
:func:`register_namer` or installed under the ``bailclio.namers`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from bailclio.cluster import cluster_points, clustering_from_labels
from bailclio.config import (
    ClusterConfig,
    EmbeddingConfig,
    HierarchyConfig,
    NamingConfig,
    ReduceConfig,
)
from bailclio.embeddings.encoder import embed_texts
from bailclio.errors import UserError
from bailclio.hierarchy import build_hierarchy
from bailclio.naming import name_levels
from bailclio.plugins import NAMERS
from bailclio.reduce import reduce_vectors
from bailclio.stages import (
    Clusterer,
    Clustering,
    Hierarchy,
    Naming,
    NamingContext,
    NodeName,
)

if TYPE_CHECKING:
    from bailclio.llmnaming.stage import LLMStage


class SentenceTransformerEmbedder:
    """A sentence-transformers model through bailclio's vector cache (the default: MiniLM)."""

    def __init__(self, config: EmbeddingConfig | None = None, **settings: Any) -> None:
        base = config or EmbeddingConfig()
        self.config = base.model_copy(update=settings) if settings else base

    def embed(self, texts: list[str], *, progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
        return embed_texts(texts, self.config, progress=progress)

    def describe(self) -> str:
        return self.config.model


class UMAPReducer:
    """Centre, exact cosine kNN graph, UMAP to ``n_components`` for clustering and 2-D for the map."""

    def __init__(self, config: ReduceConfig | None = None, **settings: Any) -> None:
        base = config or ReduceConfig()
        self.config = base.model_copy(update=settings) if settings else base

    def reduce(self, vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        return reduce_vectors(vectors, self.config, seed)


class HDBSCANClusterer:
    """HDBSCAN leaves; noise flagged and attached to the nearest leaves."""

    def __init__(self, config: ClusterConfig | None = None, **settings: Any) -> None:
        base = config or ClusterConfig()
        self.config = base.model_copy(update=settings) if settings else base

    def cluster(self, space: np.ndarray) -> Clustering:
        return cluster_points(space, self.config)


class SklearnClusterer:
    """Any clustering estimator with ``fit_predict`` (``-1`` read as noise, attached as HDBSCAN's is).

    >>> from sklearn.cluster import AgglomerativeClustering
    >>> X = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    >>> SklearnClusterer(AgglomerativeClustering(n_clusters=2)).cluster(X).labels.tolist()
    [0, 0, 1, 1]
    """

    def __init__(self, estimator: Any, *, attach_outliers: bool = True, outlier_neighbors: int = 10) -> None:
        if not hasattr(estimator, "fit_predict"):
            raise TypeError(f"{type(estimator).__name__} has no fit_predict: not a clustering estimator")
        self.estimator = estimator
        self.attach_outliers = attach_outliers
        self.outlier_neighbors = outlier_neighbors

    def cluster(self, space: np.ndarray) -> Clustering:
        labels = np.asarray(self.estimator.fit_predict(space))
        params: dict[str, Any] = {"method": type(self.estimator).__name__}
        if hasattr(self.estimator, "get_params"):
            params.update({k: v for k, v in self.estimator.get_params().items() if _plain(v)})
        probs = getattr(self.estimator, "probabilities_", None)
        return clustering_from_labels(
            labels,
            space,
            probabilities=None if probs is None else np.asarray(probs),
            params=params,
            attach=self.attach_outliers,
            neighbors=self.outlier_neighbors,
        )

    def describe(self) -> str:
        return type(self.estimator).__name__


class KMeansClusterer(SklearnClusterer):
    """scikit-learn's KMeans with ``n_clusters`` leaves (no outliers)."""

    def __init__(self, n_clusters: int, *, random_state: int = 42, **kwargs: Any) -> None:
        from sklearn.cluster import KMeans  # scikit-learn's cluster module is slow to import

        super().__init__(KMeans(n_clusters=n_clusters, random_state=random_state, n_init="auto", **kwargs))


def as_clusterer(obj: Any) -> Clusterer:
    """A :class:`~bailclio.stages.Clusterer` as is; an estimator with ``fit_predict`` wrapped."""
    if hasattr(obj, "cluster"):
        return obj
    if hasattr(obj, "fit_predict"):
        return SklearnClusterer(obj)
    raise TypeError(f"{type(obj).__name__} is neither a Clusterer (cluster(space)) nor an estimator")


class WardHierarchy:
    """A dendrogram over the leaf centroids, cut once per level; depth and sizes from the data
    (or pinned in the config). Given the embeddings too, the centroids join both spaces."""

    label = "ward-on-leaf-centroids"

    def __init__(self, config: HierarchyConfig | None = None, **settings: Any) -> None:
        base = config or HierarchyConfig()
        self.config = base.model_copy(update=settings) if settings else base

    def build(
        self, space: np.ndarray, leaf_labels: np.ndarray, vectors: np.ndarray | None = None
    ) -> Hierarchy:
        return build_hierarchy(space, leaf_labels, self.config, vectors=vectors)


class KeyphraseNamer:
    """Each node named by its class-based TF-IDF keyphrases (request boilerplate removed)."""

    def __init__(self, config: NamingConfig | None = None) -> None:
        self.config = config or NamingConfig()

    def name(self, ctx: NamingContext) -> Naming:
        levels = []
        for level, kp in enumerate(ctx.keyphrases):
            levels.append({g: NodeName(ctx.fixed.get((level, g), meta["name"])) for g, meta in kp.items()})
        return Naming(levels, {"naming": "keyphrases"})


class LLMNamer:
    """Short imperative names and two-sentence descriptions written by an LLM from each node's
    members, contrasted with the nearest other nodes; a node whose call fails keeps its
    keyphrase name (``name_source``)."""

    stage_name = "llm names"

    def __init__(self, stage: LLMStage) -> None:
        self.stage = stage

    def name(self, ctx: NamingContext) -> Naming:
        depth = ctx.hierarchy.depth
        cfg = self.stage.cfg

        def keyphrases_for(groups: np.ndarray) -> dict[int, dict[str, Any]]:
            return name_levels(ctx.texts, ctx.space, [groups], ctx.is_outlier, cfg)[0]

        result = self.stage.names(
            summaries=ctx.texts,
            space=ctx.space,
            leaf_of_unique=ctx.leaf_labels,
            parents=ctx.hierarchy.parents,
            levels=ctx.keyphrases,
            fixed_leaves={g: n for (lv, g), n in ctx.fixed.items() if lv == depth - 1},
            vectors=ctx.vectors,
            embed=ctx.embed,
            keyphrases_for=keyphrases_for,
        )
        hierarchy = None
        if result.parents is not None:
            info = {**ctx.hierarchy.info, **result.hierarchy_info}
            hierarchy = Hierarchy(result.parents, ctx.hierarchy.n_leaves, info)
        levels = [
            {g: NodeName(n.name, n.description, n.source, n.error, dict(n.extra)) for g, n in lvl.items()}
            for lvl in result.levels
        ]
        sources = [n.source for lvl in levels for n in lvl.values()]
        n_llm = sum(s == "llm" for s in sources)
        facet = self.stage.facet
        return Naming(
            levels,
            {
                "naming": "llm" if n_llm else "keyphrases",
                "hierarchy_note": "llm-named" if hierarchy is None else "rebuilt by the LLM",
                "facet": facet.name if facet else None,
                "llm_model": self.stage.model,
                **self.stage.taxonomy_meta(),
                "llm_named_nodes": n_llm,
                "keyphrase_named_nodes": sum(s == "keyphrases" for s in sources),
            },
            hierarchy=hierarchy,
        )


# ----------------------------------------------------------------------------- namers by name

NamerFactory = Callable[..., Any]  # (config: Config, llm: LLMStage | None) -> Namer
NAMER_ENTRY_POINTS = NAMERS.group


def register_namer(name: str, factory: NamerFactory | str) -> None:
    """Make ``make_namer(name, ...)`` (and ``Taxonomer(namer=name)``) build ``factory(config, llm)``;
    the same as ``bailclio.plugins.NAMERS.register``."""
    NAMERS.register(name, factory)


def _keyphrase_factory(config: Any, llm: LLMStage | None) -> KeyphraseNamer:
    return KeyphraseNamer(config.naming)


def _llm_factory(config: Any, llm: LLMStage | None) -> LLMNamer:
    if llm is None:
        raise UserError("the llm namer needs an LLM back-end (llm.backend, or llm= an instance)")
    return LLMNamer(llm)


register_namer("keyphrases", _keyphrase_factory)
register_namer("llm", _llm_factory)


def namer_names() -> list[str]:
    return sorted(NAMERS.names())


def make_namer(name: str, config: Any, llm: LLMStage | None = None) -> Any:
    """The namer registered (or installed as an entry point) under ``name``."""
    return NAMERS.get(name)(config, llm)


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)
