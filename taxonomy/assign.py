"""Label new conversations with an existing taxonomy, without rebuilding it.

New rows are read like any input (:func:`bailclio.ingest.read_input`), embedded with the run's own
embedding model (through the shared cache) and centred with the run's corpus mean exactly as the
run's vectors were (:func:`bailclio.reduce.center_vectors`). Then each row is placed by one of:

* ``knn`` (default): the k nearest run rows by cosine in that space vote for their leaf, weighted
  by similarity; ``distance`` is the mean cosine distance to those k rows and ``confidence`` the
  winning leaf's share of the vote;
* ``centroid``: the nearest leaf centroid; ``distance`` is the cosine distance to it and
  ``confidence`` the margin to the second nearest, ``1 - d1 / d2``.

The distance threshold is calibrated on the run itself: the ``quantile`` (default 0.95) of the
same distance measured for the run's own rows, each left out of what it is measured against
(its k nearest other rows for ``knn``, its leaf's centroid without it for ``centroid``). A new
row farther than that is ``unassigned`` (``leaf_id`` null) rather than forced into a leaf. Map
coordinates ``x, y`` are the similarity-weighted mean of the k nearest run rows' coordinates.
``is_outlier`` is true for unassigned rows and for rows whose nearest run rows are mostly
outliers themselves.

bench/assign_accuracy.py measures both on 70/30 splits of BailBench (medians over 3 seeds): the
run's own rows placed leave-one-out land back in their own leaf 87% of the time with kNN (k=10)
against 79% with the nearest centroid, and in their own top category 92% against 87%; the held-out
rows' majority-category accuracy is 0.63 for both, next to a ceiling of 0.65 set by the leaves'
own purity. kNN is the default for its better self-agreement.

With ``--llm`` an LLM picks each row's leaf from a shortlist the embedding placement proposes, and
the embedding placement is the fallback when a call fails: see :mod:`bailclio.taxonomy.assign_llm`.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.taxonomy.assign_llm import DEFAULT_SHORTLIST
from bailclio.taxonomy.export import conversation_as_json_text, neutralise_formulas
from bailclio.taxonomy.model import level_stems

if TYPE_CHECKING:
    from bailclio.config import Config, EmbeddingConfig
    from bailclio.rundir import Run

METHODS = ("knn", "centroid")
DEFAULT_K = 10
DEFAULT_QUANTILE = 0.95
META_RUN = b"bailclio.run"
META_MODEL = b"bailclio.embedding_model_key"


@dataclass
class Reference:
    """The run's side of the placement, computed once per run."""

    run: Run
    vectors: np.ndarray  # centred + normalised run vectors [n, d]
    mean: np.ndarray | None  # the corpus mean subtracted before normalising (None: not centred)
    leaf_ids: list[str]
    leaf_index: np.ndarray  # index into ``leaves`` per run row
    leaves: list[str]
    is_outlier: np.ndarray
    xy: np.ndarray
    model_key: str
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass
class Placement:
    leaf_ids: list[str | None]
    distance: np.ndarray
    confidence: np.ndarray
    unassigned: np.ndarray
    is_outlier: np.ndarray
    xy: np.ndarray
    threshold: float
    # before the threshold: the leaf index each row would get, and its neighbours' outlier share
    winner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    neighbour_outlier: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # [rows, leaves]: the kNN similarity vote and the cosine similarity to each leaf centroid
    votes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    centroid_sim: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # [rows, k]: the k nearest run rows (indices into the reference) and their cosine similarity
    neighbours: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    similarity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


def _normalise(X: np.ndarray) -> np.ndarray:
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
    its leaves indexed.

    A run fitted on a sample (:mod:`bailclio.scale`, an assignments column ``fitted``) is
    referenced by its fitted rows only: the rows its taxonomy was built on, which are also the
    rows its other rows were placed against."""
    from bailclio import rundir
    from bailclio.embeddings.encoder import model_key

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
        vectors = _normalise(X - mean)
    else:
        vectors = _normalise(X)
    leaf_ids = assignments["leaf_id"].to_list()
    leaves = sorted(set(leaf_ids))
    pos = {lf: i for i, lf in enumerate(leaves)}
    leaf_index = np.array([pos[lf] for lf in leaf_ids], dtype=np.int64)
    centroids = np.zeros((len(leaves), vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, leaf_index, vectors)
    cfg = run_embedding_config(run)
    return Reference(
        run=run,
        vectors=vectors,
        mean=mean,
        leaf_ids=leaf_ids,
        leaf_index=leaf_index,
        leaves=leaves,
        is_outlier=np.asarray(assignments["is_outlier"].to_list(), dtype=bool),
        xy=np.column_stack([assignments["x"].to_numpy(), assignments["y"].to_numpy()]).astype(np.float32),
        model_key=run.manifest.get("embedding", {}).get("model_key") or model_key(cfg),
        centroids=_normalise(centroids),
    )


def transform(ref: Reference, X: np.ndarray) -> np.ndarray:
    """New vectors into the run's centred space."""
    if X.shape[1] != ref.vectors.shape[1]:
        raise UserError(
            f"new vectors have dimension {X.shape[1]} but the run's have {ref.vectors.shape[1]}: "
            "they were embedded with a different model"
        )
    X = X.astype(np.float32)
    return _normalise(X - ref.mean) if ref.mean is not None else _normalise(X)


# cosine at or above which a reference row counts as the query itself (``exclude_identical``)
IDENTICAL = 1.0 - 1e-5


def _topk(
    Q: np.ndarray,
    R: np.ndarray,
    k: int,
    exclude_self: bool = False,
    chunk: int = 2048,
    exclude_identical: bool = False,
):
    n = Q.shape[0]
    k = min(k, R.shape[0] - (1 if exclude_self else 0))
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


# where a run has too few rows to calibrate on: a cosine distance beyond which texts rarely share
# a topic (MiniLM-style models)
UNCALIBRATED_THRESHOLD = 0.6


RUN_COLUMN = "run_dir"  # assign's CSV output: the run directory it was placed in


def _knn_distance(sim: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - sim, 0.0, 2.0).mean(axis=1)


def _uncalibrated(why: str) -> float:
    import logging

    logging.getLogger("bailclio").warning(
        f"[bailclio] warning: the distance threshold cannot be calibrated ({why}); rows farther than "
        f"{UNCALIBRATED_THRESHOLD} (cosine distance) from the run are left unassigned"
    )
    return UNCALIBRATED_THRESHOLD


def calibrate(ref: Reference, method: str, k: int, quantile: float) -> float:
    """The distance threshold: the ``quantile`` of the run's own rows' distances (a fixed
    :data:`UNCALIBRATED_THRESHOLD`, with a warning, where the run has too few rows to measure)."""
    if not 0.0 < quantile <= 1.0:
        raise UserError(f"--threshold-quantile must be in (0, 1], got {quantile}")
    if quantile >= 1.0:
        return float("inf")
    if method == "knn":
        if ref.vectors.shape[0] < 2:
            return _uncalibrated(f"the run has {ref.vectors.shape[0]} row")
        _, sim = _topk(ref.vectors, ref.vectors, k, exclude_self=True)
        d = _knn_distance(sim)
    else:
        # each row against its leaf's centroid without itself, as a new row meets the centroid
        # (with itself in it, small leaves look tighter than they are and new rows are refused)
        sums = np.zeros_like(ref.centroids)
        np.add.at(sums, ref.leaf_index, ref.vectors)
        rest = sums[ref.leaf_index] - ref.vectors
        norm = np.linalg.norm(rest, axis=1)
        alone = norm < 1e-6  # a leaf of one row
        if alone.all():
            return _uncalibrated("every leaf of the run has one row")
        own = np.einsum("ij,ij->i", ref.vectors[~alone], rest[~alone]) / norm[~alone]
        d = 1.0 - own
    return float(np.quantile(d, quantile))


def place(
    ref: Reference,
    Q: np.ndarray,
    *,
    method: str = "knn",
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    threshold: float | None = None,
    exclude_identical: bool = False,
) -> Placement:
    """Place new vectors ``Q`` (already in the run's space, see :func:`transform`); a given
    ``threshold`` (from :func:`calibrate`) saves calibrating again for every batch.
    ``exclude_identical`` leaves out reference rows identical to the row placed, so that a run's
    own rows are placed as if they were new (as ``calibrate`` measures them)."""
    if method not in METHODS:
        raise UserError(f"unknown placement method '{method}' (use {', '.join(METHODS)})")
    if threshold is None:
        threshold = calibrate(ref, method, k, quantile)
    n = Q.shape[0]
    idx, sim = _topk(Q, ref.vectors, k, exclude_identical=exclude_identical)
    w = np.clip(sim, 1e-6, None)
    xy = (ref.xy[idx] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    outlier_vote = (ref.is_outlier[idx] * w).sum(axis=1) / w.sum(axis=1)
    votes = np.zeros((n, len(ref.leaves)), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(n), idx.shape[1]), ref.leaf_index[idx].ravel()), w.ravel())
    csim = Q @ ref.centroids.T
    if method == "knn":
        best = votes.argmax(axis=1)
        confidence = votes[np.arange(n), best] / votes.sum(axis=1)
        distance = _knn_distance(sim)
    else:
        order = np.argsort(-csim, axis=1)
        best = order[:, 0]
        d1 = 1.0 - csim[np.arange(n), best]
        if csim.shape[1] > 1:
            d2 = 1.0 - csim[np.arange(n), order[:, 1]]
            confidence = np.clip(1.0 - d1 / np.maximum(d2, 1e-9), 0.0, 1.0)
        else:
            confidence = np.ones(n)
        distance = d1
    unassigned = distance > threshold
    leaf_ids = [None if u else ref.leaves[b] for u, b in zip(unassigned, best, strict=True)]
    return Placement(
        leaf_ids=leaf_ids,
        distance=distance.astype(np.float32),
        confidence=confidence.astype(np.float32),
        unassigned=unassigned,
        is_outlier=unassigned | (outlier_vote > 0.5),
        xy=xy.astype(np.float32),
        threshold=threshold,
        winner=best.astype(np.int64),
        neighbour_outlier=outlier_vote > 0.5,
        votes=votes,
        centroid_sim=csim,
        neighbours=idx,
        similarity=sim,
    )


@dataclass
class AssignResult:
    frame: pl.DataFrame
    rejects: list[dict[str, Any]]
    threshold: float
    method: str
    embed_stats: dict[str, Any]
    llm: dict[str, Any] | None = None  # with --llm: counts and the back-end's counters


def assign_input(
    run: Run,
    input_path: str | Path,
    *,
    method: str = "knn",
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    embedding_model: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    progress: bool = True,
    llm_config: Config | None = None,
    shortlist: int = DEFAULT_SHORTLIST,
) -> AssignResult:
    """Read, embed and place ``input_path``'s rows in ``run``'s taxonomy; with ``llm_config``
    (``llm.backend`` set) an LLM then picks each row's leaf from a shortlist
    (:mod:`bailclio.taxonomy.assign_llm`)."""
    from bailclio.embeddings.encoder import embed_texts
    from bailclio.ingest import read_input

    if (run.manifest.get("embedding") or {}).get("model_key") == "precomputed":
        raise UserError(
            f"{run.path}: the run was built on precomputed vectors; place new rows with "
            "Taxonomer.load(run).transform(rows, embeddings=...)"
        )
    cfg = run_embedding_config(run, embedding_model)
    ref = reference(run)
    in_cfg = run.manifest.get("config", {}).get("input", {})
    ing = read_input(
        input_path,
        text_column=text_column,
        id_column=id_column,
        max_chars=int(in_cfg.get("max_chars") or 1000),
    )
    texts = ing.frame["text"].to_list()
    X, stats = embed_texts(texts, cfg, progress=progress)
    placement = place(ref, transform(ref, X), method=method, k=k, quantile=quantile)
    if llm_config is None or llm_config.llm.backend == "none":
        frame = placement_frame(run, ing.frame, placement)
        return AssignResult(frame, ing.rejects, placement.threshold, method, stats)
    frame, report = llm_placement(run, ref, ing.frame, placement, llm_config, shortlist, progress)
    return AssignResult(frame, ing.rejects, placement.threshold, method, stats, report)


def place_rows(
    run: Run,
    ref: Reference,
    conv: pl.DataFrame,
    X: np.ndarray,
    *,
    method: str = "knn",
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
) -> pl.DataFrame:
    """The assign output for rows ``conv`` whose vectors ``X`` are already computed."""
    placement = place(ref, transform(ref, X), method=method, k=k, quantile=quantile)
    return placement_frame(run, conv, placement)


def llm_placement(
    run: Run,
    ref: Reference,
    conv: pl.DataFrame,
    p: Placement,
    cfg: Config,
    shortlist: int,
    progress: bool,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The LLM's pick from each row's shortlist, the embedding placement where a call failed."""
    from bailclio.llm import make_backend
    from bailclio.llmnaming.stage import default_cache_path
    from bailclio.taxonomy.assign_llm import NONE, classify, shortlists

    if shortlist < 1:
        raise UserError("--shortlist must be at least 1")
    tax = run.taxonomy
    excluded = {n.id for n in tax.leaves if n.extra.get("is_outlier_node")}
    offered = [lf for lf in ref.leaves if lf not in excluded]
    if not offered:
        raise UserError(f"{run.path}: the run has no leaf but the outlier leaf to choose from")
    missing = [lf for lf in offered if lf not in tax.by_id]
    if missing:
        raise UserError(f"{run.path}: assignment names node '{missing[0]}', which is not in the taxonomy")
    lists = shortlists(ref.leaves, p.winner, p.votes, p.centroid_sim, shortlist, excluded)
    cache_path = default_cache_path(cfg)
    backend = make_backend(cfg.llm, cache_path, progress=progress)
    assert backend is not None
    try:
        texts = conv["text"].to_list()
        turns = conv["conversation"].to_list() if "conversation" in conv.columns else [None] * len(texts)
        choices = classify(backend, tax, texts, turns, lists, cfg.llm)
        llm_stats = backend.stats()
        budget = backend.budget_exhausted
    finally:
        backend.close()
    embedding_ids = list(p.leaf_ids)
    leaf_ids: list[str | None] = []
    how: list[str] = []
    llm_ids: list[str | None] = []
    for emb, ans in zip(embedding_ids, choices.answers, strict=True):
        if ans is None:  # failed: the embedding placement stands
            leaf_ids.append(emb)
            how.append("embedding" if emb is not None else "unassigned")
            llm_ids.append(None)
        elif ans == NONE:
            leaf_ids.append(None)
            how.append("unassigned")
            llm_ids.append(None)
        else:
            leaf_ids.append(ans)
            how.append("llm")
            llm_ids.append(ans)
    unassigned = np.array([lf is None for lf in leaf_ids], dtype=bool)
    final = Placement(
        leaf_ids=leaf_ids,
        distance=p.distance,
        confidence=p.confidence,
        unassigned=unassigned,
        is_outlier=unassigned | p.neighbour_outlier,
        xy=p.xy,
        threshold=p.threshold,
    )
    extra = [
        pl.Series("embedding_leaf_id", embedding_ids, dtype=pl.String),
        pl.Series("llm_leaf_id", llm_ids, dtype=pl.String),
        pl.Series("placement", how, dtype=pl.String),
        pl.Series("llm_error", choices.errors, dtype=pl.String),
    ]
    frame = placement_frame(run, conv, final, extra)
    placed = sum(h == "llm" for h in how)
    report = {
        "backend": cfg.llm.backend,
        "model": cfg.llm.model,
        "cache_path": str(cfg.llm.cache_path or cache_path),
        "rows": len(how),
        "requests": choices.distinct_requests,
        "shortlist": shortlist,
        "placed": placed,
        "disagreed": sum(
            h == "llm" and lf != emb for h, lf, emb in zip(how, leaf_ids, embedding_ids, strict=True)
        ),
        "none": sum(a == NONE for a in choices.answers),
        "failed": sum(a is None for a in choices.answers),
        "budget_exhausted": budget,
        "stats": llm_stats,
    }
    return frame, report


def placement_frame(
    run: Run, conv: pl.DataFrame, p: Placement, extra_columns: list[pl.Series] | None = None
) -> pl.DataFrame:
    """The assign output: assignments.parquet's columns (with ``level_<d>_id`` for each level
    between top and leaf), the placement's (then ``extra_columns``), every level's name
    (``top_name``, ``level_<d>_name``, ``leaf_name``), then the input's."""
    tax = run.taxonomy
    depth = tax.depth
    stems = level_stems(depth)
    per_level = {lv: tax.ids_at(lv, p.leaf_ids) for lv in range(depth)}
    names = {nid: n.name for nid, n in tax.by_id.items()}
    cols: dict[str, Any] = {
        "conversation_id": conv["conversation_id"],
        "leaf_id": pl.Series(p.leaf_ids, dtype=pl.String),
    }
    cols["top_id"] = pl.Series(per_level[0], dtype=pl.String)
    for lv in range(1, depth - 1):  # the levels between: level_1_id, level_2_id, ...
        cols[f"{stems[lv]}_id"] = pl.Series(per_level[lv], dtype=pl.String)
    cols["path"] = pl.Series(
        [None if lf is None else [n.id for n in tax.path(lf)] for lf in p.leaf_ids],
        dtype=pl.List(pl.String),
    )
    cols["is_outlier"] = pl.Series(p.is_outlier.tolist(), dtype=pl.Boolean)
    cols["x"] = pl.Series(p.xy[:, 0], dtype=pl.Float32)
    cols["y"] = pl.Series(p.xy[:, 1], dtype=pl.Float32)
    cols["unassigned"] = pl.Series(p.unassigned.tolist(), dtype=pl.Boolean)
    cols["distance"] = pl.Series(p.distance, dtype=pl.Float32)
    cols["confidence"] = pl.Series(p.confidence, dtype=pl.Float32)
    for series in extra_columns or []:
        cols[series.name] = series
    for lv in range(depth):  # top_name, level_<d>_name for each level between, leaf_name
        level_names = [names.get(x) if x else None for x in per_level[lv]]
        cols[f"{stems[lv]}_name"] = pl.Series(level_names, dtype=pl.String)
    frame = pl.DataFrame(cols)
    extra = conv.drop("conversation_id")
    extra = extra.rename({c: f"input_{c}" for c in extra.columns if c in frame.columns})
    return pl.concat([frame, extra], how="horizontal")


def default_out(run: Run, input_path: str | Path) -> Path:
    return run.path / f"assign-{Path(input_path).stem}.parquet"


def write_output(frame: pl.DataFrame, out: Path, run: Run, model_key: str) -> None:
    """Parquet (with the run's path and embedding model in its metadata) or CSV, by extension."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"{out}: output must end in .parquet or .csv")

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            meta = dict(table.schema.metadata or {})
            meta[META_RUN] = str(run.path.resolve()).encode()
            meta[META_MODEL] = model_key.encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        else:  # CSV has no metadata: a column names the run (read by diff)
            text = neutralise_formulas(conversation_as_json_text(frame)).with_columns(
                pl.col("path").list.join("/"), pl.lit(str(run.path.resolve())).alias(RUN_COLUMN)
            )
            text.write_csv(tmp)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(out, write)  # the previous file is replaced only once this one is whole


def read_output_run(path: str | Path) -> str | None:
    """The run directory an assign output belongs to: its Parquet metadata, else its folder."""
    from bailclio.rundir import is_run_dir

    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(p).metadata or {}
        except Exception as exc:
            raise UserError(f"{p}: cannot read Parquet: {exc}".splitlines()[0]) from exc
        if META_RUN in meta and is_run_dir(meta[META_RUN].decode()):
            return meta[META_RUN].decode()
    elif p.suffix.lower() == ".csv":
        try:
            head = pl.read_csv(p, n_rows=1, columns=[RUN_COLUMN], infer_schema_length=0)
        except Exception:  # noqa: BLE001 - no such column: not named, look at the folder
            head = None
        if head is not None and head.height and is_run_dir(str(head[RUN_COLUMN][0])):
            return str(head[RUN_COLUMN][0])
    if is_run_dir(p.parent):
        return str(p.parent)
    return None


def summary(run: Run, frame: pl.DataFrame) -> list[tuple[str, str, int, float]]:
    """(top id, top name, count, share) per top category, then the unassigned row."""
    n = max(frame.height, 1)
    counts = Counter(frame["top_id"].to_list())
    rows = []
    for node in sorted(run.taxonomy.roots, key=lambda nd: (-counts.get(nd.id, 0), nd.id)):
        rows.append((node.id, node.name, counts.get(node.id, 0), counts.get(node.id, 0) / n))
    rows.append(("-", "(unassigned)", counts.get(None, 0), counts.get(None, 0) / n))
    return rows


def print_summary(run: Run, result: AssignResult, out: Path, file: Any = None) -> None:
    file = file or sys.stdout
    frame = result.frame
    print(f"{'id':<6} {'rows':>7} {'share':>7}  category", file=file)
    for nid, name, count, share in summary(run, frame):
        print(f"{nid:<6} {count:>7} {100 * share:6.1f}%  {name}", file=file)
    n_un = int(frame["unassigned"].sum())
    print(
        f"\n{frame.height} rows placed by {result.method} (distance threshold {result.threshold:.4f}); "
        f"{n_un} unassigned ({100 * n_un / max(frame.height, 1):.1f}%); written to {out}",
        file=file,
    )
    llm = result.llm
    if llm:
        st = llm["stats"]
        print(
            f"LLM {llm['model']} over shortlists of {llm['shortlist']} leaves: placed {llm['placed']} "
            f"rows ({llm['disagreed']} differ from the embedding), said none for {llm['none']}, "
            f"failed for {llm['failed']} (embedding placement kept, reason in llm_error); "
            f"{llm['requests']} distinct requests, {st.get('calls', 0)} calls, "
            f"{st.get('cache_hits', 0)} cache hits, {st.get('failures', 0)} failures; "
            f"cache {llm['cache_path']}" + (" (budget reached)" if llm["budget_exhausted"] else ""),
            file=file,
        )


def self_agreement(ref: Reference, method: str = "knn", k: int = DEFAULT_K) -> np.ndarray:
    """Leave-one-out placement of the run's own rows: the leaf index each row would be given if
    it were new (its own vector left out of the neighbours or of its leaf's centroid)."""
    X = ref.vectors
    n = X.shape[0]
    if method == "knn":
        idx, sim = _topk(X, X, k, exclude_self=True)
        w = np.clip(sim, 1e-6, None)
        votes = np.zeros((n, len(ref.leaves)), dtype=np.float64)
        np.add.at(votes, (np.repeat(np.arange(n), idx.shape[1]), ref.leaf_index[idx].ravel()), w.ravel())
        return votes.argmax(axis=1)
    sums = np.zeros((len(ref.leaves), X.shape[1]), dtype=np.float64)
    np.add.at(sums, ref.leaf_index, X)
    raw = X @ sums.T
    norms = np.linalg.norm(sums, axis=1)
    sims = raw / np.maximum(norms, 1e-9)
    rows = np.arange(n)
    own = ref.leaf_index
    rest = sums[own] - X
    rest_norm = np.linalg.norm(rest, axis=1)
    sims[rows, own] = np.where(rest_norm > 1e-9, (raw[rows, own] - 1.0) / np.maximum(rest_norm, 1e-9), -1.0)
    return sims.argmax(axis=1)
