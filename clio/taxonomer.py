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
(row-aligned vectors and reduced space), ``manifest_``; ``transform`` (and ``place``, for vectors)
places new rows in it, leaving unassigned those that fit no leaf (:mod:`bailclio.taxonomy.placement`).
"""

from __future__ import annotations

import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import __version__, fitting, rundir
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
from bailclio.fitting import OUTLIER_NAME, PRECOMPUTED, Timer
from bailclio.ingest import Ingested, read_data
from bailclio.provenance import numeric_settings, package_versions
from bailclio.stability import node_stability, refit_function
from bailclio.stages import (
    Clusterer,
    Embedder,
    HierarchyBuilder,
    Namer,
    NamingContext,
    Reducer,
    describe_stage,
)
from bailclio.taxonomy.assign_output import placement_frame
from bailclio.taxonomy.model import FORMAT_VERSION, Taxonomy, node_id
from bailclio.taxonomy.placement import (
    DEFAULT_K,
    DEFAULT_QUANTILE,
    Calibration,
    Placement,
    Reference,
    calibrate,
    place,
    reference,
)

log = logging.getLogger("bailclio")


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
            vectors = fitting.rows_of(ing, np.asarray(embeddings), "embeddings")
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
        d = fitting.distinct_texts(cluster_texts)  # exact duplicates are clustered once
        texts, ids = d.texts, frame["conversation_id"].to_list()
        if row_vectors is None:
            vectors, embed_stats = timer.stage(
                "embed", lambda: self.embedder.embed(texts, progress=self.progress)
            )
        else:
            vectors, embed_stats = fitting.precomputed_vectors(row_vectors, d)
        space, xy, reduce_info = timer.stage("reduce", lambda: self.reducer.reduce(vectors, cfg.seed))
        clustering = timer.stage("cluster", lambda: self.clusterer.cluster(space))
        leaf_of_unique, outlier_leaf = fitting.leaves_with_noise(clustering.labels)
        builder = self.hierarchy_builder
        hier = timer.stage("hierarchy", lambda: fitting.build_tree(builder, space, leaf_of_unique, vectors))
        groups = hier.groups(leaf_of_unique)  # top first, leaves last
        embed = None if row_vectors is not None else (lambda t: self.embedder.embed(t, progress=False)[0])
        levels = timer.stage(
            "names",
            lambda: name_levels(
                texts, space, groups, clustering.is_outlier, cfg, vectors=vectors, embed=embed
            ),
        )
        fixed = {} if outlier_leaf is None else {(hier.depth - 1, outlier_leaf): OUTLIER_NAME}
        ctx = NamingContext(
            texts=texts,
            space=space,
            leaf_labels=leaf_of_unique,
            hierarchy=hier,
            groups=groups,
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
            hier = fitting.checked_tree(naming.hierarchy, hier)
            groups = hier.groups(leaf_of_unique)
            levels = name_levels(
                texts, space, groups, clustering.is_outlier, cfg, vectors=vectors, embed=embed
            )
            named_sizes = [len(lvl) for lvl in naming.levels]
            if named_sizes != hier.sizes:
                raise ValueError(f"namer: {named_sizes} names for levels of {hier.sizes}")

        refit = refit_function(space, vectors, self.clusterer, self.hierarchy_builder, hier.sizes)
        n_refits = cfg.cluster.stability_refits
        stable = timer.stage(
            "stability", lambda: node_stability(groups, refit, refits=n_refits, seed=cfg.seed)
        )
        row = d.row_to_unique
        row_groups = [g[row] for g in groups]
        outlier_r = clustering.is_outlier[row]
        nodes = fitting.taxonomy_nodes(
            levels, naming, hier, row_groups, ids, d.first_row, outlier_leaf, stable if n_refits else None
        )
        label = getattr(self.hierarchy_builder, "label", type(self.hierarchy_builder).__name__)
        self.taxonomy_ = Taxonomy(nodes, fitting.taxonomy_meta(label, naming))
        score = 1.0 - clustering.probabilities[row]
        leaf_ids = [node_id(len(row_groups) - 1, int(v), len(row_groups)) for v in row_groups[-1]]
        self.assignments_ = rundir.assignments_table(
            self.taxonomy_,
            ids,
            leaf_ids,
            is_outlier=outlier_r,
            outlier_score=score,
            x=xy[row, 0],
            y=xy[row, 1],
        )
        self.conversations_ = frame
        self.embeddings_ = vectors[row]
        self.space_ = space[row]
        self._embed_stats = embed_stats
        self._resolved = {
            "reduce": reduce_info,
            "cluster": clustering.params,
            "hierarchy": {"depth": hier.depth, "sizes": hier.sizes, **hier.info},
        }
        self._counts = fitting.fit_counts(len(ids), len(texts), outlier_r, hier.depth, levels)

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
        return cls.from_run(rundir.load_run(path, curated=curated), **stages)

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
    @classmethod
    def from_run(cls, run: rundir.Run, **stages: Any) -> Taxonomer:
        """A fitted Taxonomer holding a loaded run (see :meth:`load`)."""
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

    def embed_new(self, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """New texts embedded by this Taxonomer's embedder, checked to be the fitted run's model."""
        run_key = (self.manifest_.get("embedding") or {}).get("model_key")
        if run_key == PRECOMPUTED:
            raise UserError("this taxonomy was fitted on precomputed vectors: pass embeddings= for new rows")
        X, stats = self.embedder.embed(texts, progress=self.progress)
        if run_key and stats.get("model_key") != run_key:
            raise UserError(
                f"the embedder gives vectors of '{stats.get('model_key')}' but the taxonomy was built "
                f"on '{run_key}'; load it with the embedder that built it"
            )
        return X, stats

    def placement_reference(self) -> Reference:
        """The fitted rows as placement needs them (computed once)."""
        run = self.run_
        ref = getattr(self, "_reference", None)
        if ref is None or ref.run is not run:
            ref = reference(run, vectors=self.embeddings_)
            self._reference = ref
            self._calibrations: dict[tuple[int, float], Calibration] = {}
        return ref

    def calibration(self, k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE) -> Calibration:
        """The abstention threshold for ``k`` neighbours at ``quantile`` (computed once)."""
        ref = self.placement_reference()
        if (k, quantile) not in self._calibrations:
            self._calibrations[(k, quantile)] = calibrate(ref, k, quantile)
        return self._calibrations[(k, quantile)]

    def place(
        self,
        vectors: np.ndarray,
        *,
        method: str = "knn",
        k: int = DEFAULT_K,
        quantile: float = DEFAULT_QUANTILE,
        exclude_identical: bool = False,
    ) -> Placement:
        """Place rows given as vectors of the fitted run's embedding model: the one placement of
        bailclio (:mod:`bailclio.taxonomy.placement`; ``transform``, ``assign`` and ``diff`` call it)."""
        cal, ref = self.calibration(k, quantile), self.placement_reference()
        return place(
            ref, np.asarray(vectors), method=method, k=k, calibration=cal, exclude_identical=exclude_identical
        )

    def transform(
        self,
        data: Any,
        *,
        embeddings: np.ndarray | None = None,
        method: str = "knn",
        k: int = DEFAULT_K,
        quantile: float = DEFAULT_QUANTILE,
        text_column: str | None = None,
        id_column: str | None = None,
    ) -> pl.DataFrame:
        """Place new rows in the fitted taxonomy (what ``bailclio assign`` does): one row per
        accepted input row with ``leaf_id`` (null when the row fits no leaf: farther from the run
        than the calibrated distance), ``top_id``, ``path``, ``x``, ``y``, ``distance``,
        ``confidence`` and the names; rows rejected by the checks are in ``transform_rejects_``."""
        ing = read_data(
            data,
            text_column=text_column or self.config.input.text_column,
            id_column=id_column or self.config.input.id_column,
            max_chars=self.config.input.max_chars,
        )
        if embeddings is not None:
            X = fitting.rows_of(ing, np.asarray(embeddings), "embeddings").astype(np.float32)
        else:
            X, _ = self.embed_new(ing.frame["text"].to_list())
        self.transform_rejects_ = list(ing.rejects)
        return placement_frame(self.run_, ing.frame, self.place(X, method=method, k=k, quantile=quantile))
