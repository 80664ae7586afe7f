"""The Python API: a :class:`Taxonomer` configured with its stages, fitted on in-memory rows.

    >>> from bailclio import Taxonomer
    >>> tx = Taxonomer().fit(texts)                              # doctest: +SKIP
    >>> tx.taxonomy_.roots[0].name, tx.assignments_.height       # doctest: +SKIP
    >>> tx.save("runs/mine")                                     # doctest: +SKIP
    >>> Taxonomer.load("runs/mine").transform(new_texts)         # doctest: +SKIP

``fit`` runs the same stages as ``bailclio run`` (which is a thin wrapper over it): optional LLM
facet summaries -> embed (cached) -> reduce -> cluster -> hierarchy -> keyphrases -> names.
Exact duplicate texts are embedded and clustered once; every row still gets its assignment. Each
stage is an object (:mod:`bailclio.stages`); the defaults (:mod:`bailclio.components`) are built
from the :class:`~bailclio.config.Config` sections, so ``Taxonomer(config)`` gives exactly the
run directory ``bailclio run --config`` gives.

The learned state, all in memory: ``taxonomy_`` (the nodes), ``assignments_`` (one row per
conversation, as ``assignments.parquet``), ``conversations_``, ``embeddings_`` and ``space_``
(row-aligned vectors and reduced space), ``manifest_``; ``transform`` places new rows with the
run's centring and vectors (:mod:`bailclio.taxonomy.assign`).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import __version__, rundir
from bailclio.components import (
    HDBSCANClusterer,
    KeyphraseNamer,
    LLMNamer,
    SentenceTransformerEmbedder,
    UMAPReducer,
    WardHierarchy,
    as_clusterer,
    make_namer,
)
from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.ingest import Ingested, read_data
from bailclio.provenance import numeric_settings, package_versions
from bailclio.stability import node_stability, refit_function
from bailclio.stages import (
    Clusterer,
    Embedder,
    Hierarchy,
    HierarchyBuilder,
    Namer,
    NamingContext,
    Reducer,
    describe_stage,
)
from bailclio.taxonomy.model import FORMAT_VERSION, Node, Taxonomy, node_id

log = logging.getLogger("bailclio")

OUTLIER_NAME = "Unclustered (HDBSCAN noise)"
PRECOMPUTED = "precomputed"


class Timer:
    """Per-stage wall times for the manifest; announces each stage, and its time when done, on
    the ``bailclio`` logger."""

    def __init__(self, verbose: bool = True) -> None:
        self.timings: dict[str, float] = {}
        self.verbose = verbose

    def stage(self, name: str, fn: Callable[[], Any], announce: bool = True) -> Any:
        t0 = time.perf_counter()
        if self.verbose and announce:
            log.info(f"[bailclio] {name} ...")
        result = fn()
        seconds = time.perf_counter() - t0
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        if self.verbose and announce:
            log.info(f"[bailclio] {name} done in {seconds:.1f} s")
        return result


class Taxonomer:
    """Build a hierarchical taxonomy of conversations, and place new ones in it.

    Every stage is optional; the default is built from ``config``:

    * ``embedder``: texts -> vectors (:class:`~bailclio.components.SentenceTransformerEmbedder`);
    * ``reducer``: vectors -> clustering space and 2-D map (:class:`~bailclio.components.UMAPReducer`);
    * ``clusterer``: space -> leaves (:class:`~bailclio.components.HDBSCANClusterer`); any
      estimator with ``fit_predict`` (``sklearn.cluster.KMeans(12)``, ``evoc.EVoC()``) also works;
    * ``hierarchy``: leaves -> tree (:class:`~bailclio.components.WardHierarchy`);
    * ``namer``: an object, or a registered name (``"keyphrases"``, ``"llm"``); default LLM names
      when an LLM is configured, keyphrases otherwise;
    * ``llm``: an LLM back-end instance (:class:`bailclio.llm.LLMBackend`) used for facet summaries
      and names instead of the one ``config.llm`` describes; the caller keeps and closes it.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        embedder: Embedder | None = None,
        reducer: Reducer | None = None,
        clusterer: Clusterer | Any | None = None,
        hierarchy: HierarchyBuilder | None = None,
        namer: Namer | str | None = None,
        llm: Any | None = None,
        progress: bool = True,
    ) -> None:
        cfg = config or Config()
        self.config = cfg
        self.embedder: Embedder = embedder or SentenceTransformerEmbedder(cfg.embedding)
        self.reducer: Reducer = reducer or UMAPReducer(cfg.reduce)
        self.clusterer: Clusterer = (
            as_clusterer(clusterer) if clusterer is not None else HDBSCANClusterer(cfg.cluster)
        )
        self.hierarchy_builder: HierarchyBuilder = hierarchy or WardHierarchy(cfg.hierarchy)
        self.namer_spec = namer
        self.llm = llm
        self.progress = progress
        if llm is None and cfg.llm.backend != "none":
            from bailclio.llm import backend_factory

            backend_factory(cfg.llm.backend)  # an unknown back-end fails before any work
        # learned state
        self.taxonomy_: Taxonomy | None = None
        self.assignments_: pl.DataFrame | None = None
        self.conversations_: pl.DataFrame | None = None
        self.embeddings_: np.ndarray | None = None
        self.space_: np.ndarray | None = None
        self.manifest_: dict[str, Any] = {}
        self.rejects_: list[dict[str, Any]] = []
        self.path_: Path | None = None
        self.budget_message_: str | None = None

    # ------------------------------------------------------------------------------------- fit
    def fit(
        self,
        data: Any,
        *,
        embeddings: np.ndarray | None = None,
        text_column: str | None = None,
        id_column: str | None = None,
    ) -> Taxonomer:
        """Fit on ``data``: a polars frame (columns as in an input file), a list of texts, a list
        of transcripts (lists of ``{role, content}`` turns) or a list of records. ``embeddings``
        (one row per input row) are used instead of the embedder; rows rejected by the checks are
        in ``rejects_``."""
        cfg = self.config
        ing = read_data(
            data,
            text_column=text_column or cfg.input.text_column,
            id_column=id_column or cfg.input.id_column,
            limit=cfg.input.limit,
            max_chars=cfg.input.max_chars,
        )
        vectors = None
        if embeddings is not None:
            vectors = _rows_of(ing, np.asarray(embeddings), "embeddings")
        info = {"source": "memory", "rows": ing.rows_read, "shape": ing.shape, "text_source": ing.text_source}
        return self.fit_ingested(ing, input_info=info, embeddings=vectors)

    def fit_ingested(
        self,
        ing: Ingested,
        *,
        input_info: dict[str, Any],
        embeddings: np.ndarray | None = None,
        timer: Timer | None = None,
        started: datetime | None = None,
    ) -> Taxonomer:
        """Fit on rows already read and checked (``embeddings``: one per accepted row)."""
        cfg = self.config
        started = started or datetime.now(UTC)
        timer = timer or Timer(verbose=self.progress)
        frame = ing.frame
        row_texts = frame["text"].to_list()

        # With an LLM, rows are clustered on a facet summary (facets.py); otherwise on their text.
        stage = None
        cluster_texts = row_texts
        if self.llm is not None or cfg.llm.backend != "none":
            from bailclio.llmnaming.stage import LLMStage

            if embeddings is not None:
                raise UserError("precomputed embeddings cannot be used with LLM facet summaries")
            stage = LLMStage(cfg, progress=self.progress, backend=self.llm)
        try:
            if stage is not None:
                frame, cluster_texts = timer.stage("facets", lambda: stage.facets(frame))
            self._fit_texts(frame, cluster_texts, embeddings, stage, timer)
        finally:
            if stage is not None:
                stage.close()
        self.rejects_ = list(ing.rejects)
        counts = {
            "rows_read": ing.rows_read,
            "rejected": len(ing.rejects),
            **self._counts,
        }
        if stage is not None:
            counts["facet_fallback_rows"] = stage.facet_fallback_rows
        incomplete = stage.incomplete_reasons() if stage is not None else []
        self.manifest_ = {
            "format_version": FORMAT_VERSION,
            # "complete", or "incomplete" when part of the LLM stage failed (why: "incomplete")
            "status": "incomplete" if incomplete else "complete",
            "incomplete": incomplete,
            "bailclio_version": __version__,
            "created_at": started.isoformat(timespec="seconds"),
            "seed": cfg.seed,
            "input": input_info,
            "config": cfg.model_dump(mode="json"),
            "stages": self.stage_labels(),
            "resolved": self._resolved,
            "embedding": self._embed_stats,
            **({"llm": stage.manifest()} if stage is not None else {}),
            "counts": counts,
            "timings_s": dict(timer.timings),
            "versions": package_versions(),
            "platform": {"machine": platform.machine(), "system": platform.system(), **numeric_settings()},
        }
        self.budget_message_ = stage.budget_message() if stage is not None else None
        self.path_ = None
        return self

    def stage_labels(self) -> dict[str, str]:
        """What ran each stage (recorded in the manifest)."""
        namer = self.namer_spec
        if namer is None:
            label = "llm" if (self.llm is not None or self.config.llm.backend != "none") else "keyphrases"
        else:
            label = namer if isinstance(namer, str) else describe_stage(namer)
        return {
            "embedder": describe_stage(self.embedder),
            "reducer": describe_stage(self.reducer),
            "clusterer": describe_stage(self.clusterer),
            "hierarchy": describe_stage(self.hierarchy_builder),
            "namer": label,
        }

    def _namer(self, stage: Any) -> Any:
        spec = self.namer_spec
        if spec is None:
            return LLMNamer(stage) if stage is not None else KeyphraseNamer(self.config.naming)
        if isinstance(spec, str):
            return make_namer(spec, self.config, stage)
        return spec

    def _fit_texts(
        self,
        frame: pl.DataFrame,
        cluster_texts: list[str],
        row_vectors: np.ndarray | None,
        stage: Any,
        timer: Timer,
    ) -> None:
        from bailclio.naming import name_levels

        cfg = self.config
        # Exact duplicates are clustered once.
        unique_index: dict[str, int] = {}
        row_to_unique = np.empty(len(cluster_texts), dtype=np.int64)
        for i, t in enumerate(cluster_texts):
            row_to_unique[i] = unique_index.setdefault(t, len(unique_index))
        texts = list(unique_index)
        ids = frame["conversation_id"].to_list()
        first_row_of_unique = np.full(len(texts), -1, dtype=np.int64)
        for r in range(len(ids) - 1, -1, -1):
            first_row_of_unique[row_to_unique[r]] = r

        if row_vectors is None:
            vectors, embed_stats = timer.stage(
                "embed", lambda: self.embedder.embed(texts, progress=self.progress)
            )
        else:  # the first row of each distinct text gives its vector
            vectors = np.ascontiguousarray(row_vectors[first_row_of_unique], dtype=np.float32)
            embed_stats = {
                "model": PRECOMPUTED,
                "model_key": PRECOMPUTED,
                "texts": len(texts),
                "cache_hits": 0,
                "computed": 0,
                "dim": int(vectors.shape[1]),
                "seconds": 0.0,
            }
        space, xy, reduce_info = timer.stage("reduce", lambda: self.reducer.reduce(vectors, cfg.seed))
        clustering = timer.stage("cluster", lambda: self.clusterer.cluster(space))
        leaf_of_unique = clustering.labels.copy()
        if (leaf_of_unique < 0).any():  # outliers kept apart: one extra leaf holds them
            leaf_of_unique[leaf_of_unique < 0] = leaf_of_unique.max() + 1
        builder = self.hierarchy_builder
        hier = timer.stage("hierarchy", lambda: build_tree(builder, space, leaf_of_unique, vectors))
        depth = hier.depth
        groups_of_unique = hier.groups(leaf_of_unique)  # top first, leaves last
        embed = None if row_vectors is not None else (lambda t: self.embedder.embed(t, progress=False)[0])
        levels = timer.stage(
            "names",
            lambda: name_levels(
                texts, space, groups_of_unique, clustering.is_outlier, cfg, vectors=vectors, embed=embed
            ),
        )
        outlier_leaf = int(clustering.labels.max()) + 1 if (clustering.labels < 0).any() else None
        fixed = {} if outlier_leaf is None else {(depth - 1, outlier_leaf): OUTLIER_NAME}
        ctx = NamingContext(
            texts=texts,
            space=space,
            leaf_labels=leaf_of_unique,
            hierarchy=hier,
            groups=groups_of_unique,
            is_outlier=clustering.is_outlier,
            keyphrases=levels,
            fixed=fixed,
            vectors=vectors,
            embed=embed,
        )
        namer = self._namer(stage)
        naming = timer.stage(
            getattr(namer, "stage_name", "names"),
            lambda: namer.name(ctx),
            announce=hasattr(namer, "stage_name"),
        )

        if naming.hierarchy is not None:  # the namer rebuilt the levels above the leaves
            hier = _checked_tree(naming.hierarchy, hier)
            groups_of_unique = hier.groups(leaf_of_unique)
            levels = name_levels(
                texts, space, groups_of_unique, clustering.is_outlier, cfg, vectors=vectors, embed=embed
            )
            named_sizes = [len(lvl) for lvl in naming.levels]
            if named_sizes != hier.sizes:
                raise ValueError(f"namer: {named_sizes} names for levels of {hier.sizes}")

        refit = refit_function(space, vectors, self.clusterer, self.hierarchy_builder, hier.sizes)
        n_refits = cfg.cluster.stability_refits
        stable = timer.stage(
            "stability", lambda: node_stability(groups_of_unique, refit, refits=n_refits, seed=cfg.seed)
        )
        # Per-row arrays.
        row_groups = [g[row_to_unique] for g in groups_of_unique]
        outlier_r = clustering.is_outlier[row_to_unique]
        n_rows = len(ids)
        nodes: list[Node] = []
        for level, info in enumerate(levels):
            sizes = np.bincount(row_groups[level], minlength=max(info) + 1)
            for g in sorted(info):
                meta = info[g]
                size = int(sizes[g])
                extra: dict[str, Any] = {"share": round(size / n_rows, 6)}
                if stable is not None and n_refits:
                    extra["stability"] = round(float(stable[level][g]), 3)
                if level == depth - 1 and outlier_leaf is not None and g == outlier_leaf:
                    extra["is_outlier_node"] = True
                named = naming.levels[level][g]
                if named.source is not None:
                    extra["name_source"] = named.source
                if named.source == "llm":  # the keyphrase words stay on record beside the name
                    extra["keyphrase_name"] = meta["name"]
                    extra["keyphrase_description"] = meta["describe"](size)
                if named.error:
                    extra["name_error"] = named.error
                extra.update(named.extra)
                parent = None if level == 0 else node_id(level - 1, int(hier.parents[level - 1][g]), depth)
                nodes.append(
                    Node(
                        id=node_id(level, g, depth),
                        parent_id=parent,
                        level=level,
                        name=named.name,
                        description=named.description or meta["describe"](size),
                        size=size,
                        keywords=meta["keywords"],
                        exemplar_ids=[str(ids[first_row_of_unique[i]]) for i in meta["exemplars"]],
                        extra=extra,
                    )
                )
        hierarchy_label = getattr(self.hierarchy_builder, "label", type(self.hierarchy_builder).__name__)
        tax_meta: dict[str, Any] = {"naming": "keyphrases", "hierarchy": hierarchy_label}
        named_meta = dict(naming.meta)
        note = named_meta.pop("hierarchy_note", None)
        tax_meta.update(named_meta)
        if note:
            tax_meta["hierarchy"] = f"{hierarchy_label}, {note}"
        self.taxonomy_ = Taxonomy(nodes, tax_meta)

        ids_per_level = [[node_id(level, int(v), depth) for v in g] for level, g in enumerate(row_groups)]
        columns: dict[str, Any] = {
            "conversation_id": ids,
            "leaf_id": ids_per_level[-1],
            "top_id": ids_per_level[0],
            "path": [list(p) for p in zip(*ids_per_level, strict=True)],
            "is_outlier": outlier_r.tolist(),
            "outlier_score": (1.0 - clustering.probabilities[row_to_unique]).astype(np.float32),
            "x": xy[row_to_unique, 0].astype(np.float32),
            "y": xy[row_to_unique, 1].astype(np.float32),
        }
        self.assignments_ = pl.DataFrame(columns)
        self.conversations_ = frame
        self.embeddings_ = vectors[row_to_unique]
        self.space_ = space[row_to_unique]
        self._embed_stats = embed_stats
        self._resolved = {
            "reduce": reduce_info,
            "cluster": clustering.params,
            "hierarchy": {"depth": depth, "sizes": hier.sizes, **hier.info},
        }
        self._counts = {
            "accepted": n_rows,
            "unique_texts": len(texts),
            "duplicates_collapsed": n_rows - len(texts),
            "clustered": int((~outlier_r).sum()),
            "outliers": int(outlier_r.sum()),
            "levels": depth,
            "nodes_per_level": [len(lvl) for lvl in levels],
            "leaves": len(levels[-1]),
            "intermediate": sum(len(lvl) for lvl in levels[1:-1]),
            "top": len(levels[0]),
        }

    # ------------------------------------------------------------------------------ save / load
    def _check_fitted(self) -> None:
        if self.taxonomy_ is None or self.assignments_ is None:
            raise UserError("this Taxonomer is not fitted: call fit(...) or Taxonomer.load(run_dir)")

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the fitted state as a run directory (readable by every command and the explorer)."""
        self._check_fitted()
        with rundir.building(path, force) as staging:  # the previous run stays until this is whole
            if self.rejects_:
                rundir.write_rejects(staging, self.rejects_)
            self.write(staging)
        self.path_ = Path(path)
        return self.path_

    def write(self, out_dir: Path, *, timer: Timer | None = None, t_start: float | None = None) -> Path:
        """Write into ``out_dir`` (already prepared); the manifest last."""
        self._check_fitted()
        assert self.conversations_ is not None and self.embeddings_ is not None and self.space_ is not None
        timer = timer or Timer(verbose=self.progress)
        conversations, assignments, taxonomy = self.conversations_, self.assignments_, self.taxonomy_
        embeddings, space = self.embeddings_, self.space_
        timer.stage(
            "write",
            lambda: rundir.write_tables(
                out_dir,
                conversations=conversations,
                assignments=assignments,
                taxonomy=taxonomy,
                embeddings=embeddings,
                space=space,
            ),
        )
        timings = {**self.manifest_.get("timings_s", {}), **timer.timings}
        if t_start is not None:
            timings["total"] = round(time.perf_counter() - t_start, 3)
        else:
            timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
        self.manifest_["timings_s"] = timings
        rundir.write_manifest(out_dir, self.manifest_)
        self.path_ = out_dir
        return out_dir

    @classmethod
    def load(cls, path: str | Path, *, curated: bool = True, **stages: Any) -> Taxonomer:
        """A fitted Taxonomer from a run directory (``curation.json`` applied unless ``curated``
        is false); ``stages`` replace the defaults built from the run's config, e.g. the
        ``embedder`` that made its vectors when it was not a sentence-transformers model."""
        run = rundir.load_run(path, curated=curated)
        try:
            cfg = Config.model_validate(run.manifest.get("config") or {})
        except Exception:  # a run written by another version: its embedding settings still count
            cfg = Config()
        tx = cls(cfg, **stages)
        tx.taxonomy_ = run.taxonomy
        tx.assignments_ = run.assignments
        tx.conversations_ = run.conversations
        tx.manifest_ = run.manifest
        tx.path_ = run.path
        tx._run = run
        return tx

    @property
    def run_(self) -> rundir.Run:
        """The fitted state as a :class:`bailclio.rundir.Run` (what the readers take)."""
        self._check_fitted()
        run = getattr(self, "_run", None)
        if run is None or run.taxonomy is not self.taxonomy_:
            assert self.conversations_ is not None and self.assignments_ is not None and self.taxonomy_
            run = rundir.Run(
                self.path_ or Path("."),
                self.manifest_,
                self.conversations_,
                self.assignments_,
                self.taxonomy_,
            )
            self._run = run
        return run

    # -------------------------------------------------------------------------------- transform
    def transform(
        self,
        data: Any,
        *,
        embeddings: np.ndarray | None = None,
        method: str = "knn",
        k: int = 10,
        quantile: float = 0.95,
        text_column: str | None = None,
        id_column: str | None = None,
    ) -> pl.DataFrame:
        """Place new rows in the fitted taxonomy (what ``bailclio assign`` does): one row per
        accepted input row with ``leaf_id`` (null when farther than the calibrated threshold),
        ``top_id``, ``path``, ``x``, ``y``, ``distance``, ``confidence`` and the names; rows
        rejected by the checks are in ``transform_rejects_``."""
        from bailclio.taxonomy.assign import place_rows, reference

        run = self.run_
        ing = read_data(
            data,
            text_column=text_column or self.config.input.text_column,
            id_column=id_column or self.config.input.id_column,
            max_chars=self.config.input.max_chars,
        )
        run_key = (run.manifest.get("embedding") or {}).get("model_key")
        if embeddings is not None:
            X = _rows_of(ing, np.asarray(embeddings), "embeddings").astype(np.float32)
        elif run_key == PRECOMPUTED:
            raise UserError("this taxonomy was fitted on precomputed vectors: pass embeddings= for new rows")
        else:
            X, stats = self.embedder.embed(ing.frame["text"].to_list(), progress=self.progress)
            if run_key and stats.get("model_key") != run_key:
                raise UserError(
                    f"the embedder gives vectors of '{stats.get('model_key')}' but the taxonomy was built "
                    f"on '{run_key}'; load it with the embedder that built it"
                )
        ref = reference(run, vectors=None if self.embeddings_ is None else self.embeddings_)
        self.transform_rejects_ = list(ing.rejects)
        return place_rows(run, ref, ing.frame, X, method=method, k=k, quantile=quantile)


def _checked_tree(new: Any, old: Any) -> Any:
    """A namer's rebuilt hierarchy, if it is one: same leaves and depth, every node of a level
    under exactly one node of the level above, the levels numbered 0.. without gaps."""
    if new.depth != old.depth or len(new.parents[-1]) != len(old.parents[-1]):
        raise ValueError(f"namer: a hierarchy of sizes {new.sizes} for the structural {old.sizes}")
    for d, p in enumerate(new.parents):
        n_up = int(p.max()) + 1 if len(p) else 0
        if len(p) == 0 or p.min() < 0 or set(np.unique(p).tolist()) != set(range(n_up)):
            raise ValueError(f"namer: level {d} of the rebuilt hierarchy has empty or negative nodes")
        if d > 0 and len(new.parents[d - 1]) != n_up:
            raise ValueError(f"namer: level {d} has {len(new.parents[d - 1])} nodes but {n_up} are parents")
    return new


def build_tree(
    builder: HierarchyBuilder, space: np.ndarray, leaves: np.ndarray, vectors: np.ndarray
) -> Hierarchy:
    """``builder.build(space, leaves)``, with the embeddings as ``vectors=`` where it takes them."""
    import inspect

    try:
        takes_vectors = "vectors" in inspect.signature(builder.build).parameters
    except (TypeError, ValueError):
        takes_vectors = False
    if takes_vectors:
        return builder.build(space, leaves, vectors=vectors)
    return builder.build(space, leaves)


def _rows_of(ing: Ingested, vectors: np.ndarray, what: str) -> np.ndarray:
    """The rows of ``vectors`` (one per input row) that belong to the accepted rows."""
    if vectors.ndim != 2:
        raise UserError(f"{what}: expected a 2-D array (rows x dimensions), got shape {vectors.shape}")
    if vectors.shape[0] != ing.rows_read:
        raise UserError(f"{what}: {vectors.shape[0]} vectors for {ing.rows_read} input rows")
    rows = ing.frame["source_line"].to_numpy() - 1
    return vectors[rows]
