"""Fit on a sample, place the rest: ``bailclio run`` on inputs larger than ``[scale] fit_sample``.

An input with more rows than ``fit_sample`` (default 20,000; ``--sample N``; 0 turns it off) is
built in four steps, into a run directory that every command reads like any other:

1. **sample**: ``fit_sample`` input rows are drawn, deterministically from the seed; with
   ``[scale] stratify = "model"`` (``--stratify``) each value of that column keeps its share
   (largest remainders, at least one row per value);
2. **fit**: the ordinary pipeline (:func:`bailclio.pipeline.run`) builds the taxonomy on the
   sample: embeddings, UMAP, HDBSCAN, hierarchy, names;
3. **place**: every other row is read in chunks of ``chunk_rows`` (:mod:`bailclio.stream`), embedded
   and placed by :class:`bailclio.placer.Placer`, the code ``bailclio assign`` uses, either in
   this process (``engine = "local"``) or as a Ray Data pipeline (``engine = "ray"``,
   :mod:`bailclio.scale_ray`); memory stays bounded by the chunk, not the input;
4. **write**: the rows are written in input order; ``assignments.parquet`` gains ``fitted``
   (true for the sample's rows) and, for placed rows, ``distance`` and ``confidence``; node sizes
   and shares count every row; the manifest's ``scale`` section says how many rows were fitted
   and placed, the sample's strata and the placement threshold.

Rows are validated exactly as ``read_input`` does (same rejects, same ids). ``bailclio assign`` on
such a run places new rows against its fitted rows, as the run placed its own. With the LLM
stage configured, every row needs a facet summary before it can be placed, so such runs are fitted
on all rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import rundir
from bailclio.config import Config
from bailclio.provenance import file_sha256

WORK = ".scale-work"  # inside the run directory while it is being built; removed at the end
WRITE_ROWS = 100_000


log = logging.getLogger("bailclio")


def _log(msg: str) -> None:
    log.info(f"[bailclio] {msg}")


@dataclass
class SamplePlan:
    n_records: int
    size: int
    indices: np.ndarray  # sorted record indices (0-based, in file order) of the sample
    stratify: str | None = None
    strata: dict[str, int] = field(default_factory=dict)  # value -> rows drawn
    selection: Any = None  # the bailclio.ingest.Selection of ``--limit --shuffle``: the records read


def choose_sample(n: int, size: int, seed: int, strata: list[Any] | None = None) -> tuple[np.ndarray, dict]:
    """``size`` of ``n`` record indices, sorted; with ``strata`` (one value per record) each
    value keeps its share, by largest remainders, at least one row for every value when
    ``size`` allows. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    size = min(size, n)
    if strata is None:
        return np.sort(rng.choice(n, size=size, replace=False)), {}
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(strata[:n]):
        groups.setdefault("" if v is None else str(v), []).append(i)
    keys = sorted(groups)
    exact = np.array([len(groups[k]) * size / n for k in keys])
    quota = np.floor(exact).astype(int)
    if size >= len(keys):
        quota = np.maximum(quota, 1)
    while quota.sum() > size:  # the minimum of one pushed it over: take back from the largest
        quota[int(np.argmax(quota - exact))] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    j = 0
    while quota.sum() < size:
        i = int(order[j % len(keys)])
        if quota[i] < len(groups[keys[i]]):
            quota[i] += 1
        j += 1
    picked = [rng.permutation(groups[k])[:q] for k, q in zip(keys, quota, strict=True)]
    drawn = {k: int(q) for k, q in zip(keys, quota, strict=True) if q}
    return np.sort(np.concatenate(picked)).astype(np.int64), drawn


def sampling_plan(input_path: str | Path, cfg: Config) -> SamplePlan | None:
    """The sample to fit on, or None when the input is fitted whole."""
    from bailclio.stream import column_values, count_records

    size = cfg.scale.fit_sample
    if size <= 0:
        return None
    from bailclio.ingest import input_selection

    selection = input_selection(input_path, cfg)
    n = count_records(input_path, cfg.input.max_record_bytes) if selection is None else len(selection.indices)
    if cfg.input.limit is not None:
        n = min(n, cfg.input.limit)
    if n <= size:
        return None
    if cfg.llm.backend != "none":
        _log(f"{n} rows above fit_sample={size}, but the LLM stage summarises every row: fitting all")
        return None
    strata = column_values(input_path, cfg.scale.stratify) if cfg.scale.stratify else None
    if selection is not None and strata is not None:
        strata = [strata[i] for i in selection.indices]
    indices, drawn = choose_sample(n, size, cfg.seed, strata)
    if selection is not None:  # positions among the selected records -> record numbers
        indices = selection.indices[indices]
    return SamplePlan(n, size, indices, cfg.scale.stratify, drawn, selection)


def _sample_records(input_path: Path, plan: SamplePlan, cfg: Config) -> tuple[list[dict[str, Any]], str]:
    """The sample's records (ids made explicit where the file has none) and the text column."""
    from bailclio.stream import detect_shape, iter_records

    shape = detect_shape(input_path, cfg.input.text_column, cfg.input.id_column, cfg.input.max_record_bytes)
    wanted = plan.indices
    records: list[dict[str, Any]] = []
    j = 0
    for index, (_, rec, _, _) in enumerate(iter_records(input_path, cfg.input.max_record_bytes)):
        if j >= len(wanted):
            break
        if index != wanted[j]:
            continue
        j += 1
        if rec is None:
            continue  # unreadable: rejected when the rows are streamed
        if shape.id_field is None:
            rec = {**rec, "conversation_id": str(index)}
        records.append(rec)
    return records, shape.source


@dataclass
class _Fit:
    taxonomer: Any  # the fitted bailclio.Taxonomer
    row_of_id: dict[str, int]  # conversation id -> fitted row
    assignments: pl.DataFrame
    embeddings: np.ndarray
    space: np.ndarray
    leaf_index: np.ndarray  # per fitted row: index into the reference's leaves


def _fit(input_path: Path, plan: SamplePlan, cfg: Config, progress: bool, taxonomer: Any = None) -> _Fit:
    """The taxonomy of the sample, fitted in memory by the ordinary pipeline's Taxonomer (or the
    caller's ``taxonomer``, whose stages then fit the sample and embed the placed rows)."""
    from bailclio.ingest import read_data
    from bailclio.taxonomer import Taxonomer, Timer

    records, source = _sample_records(input_path, plan, cfg)
    fit_cfg = cfg.model_copy(deep=True)
    fit_cfg.scale.fit_sample = 0
    fit_cfg.input.limit = None
    ing = read_data(
        records,
        text_column=source,
        id_column=cfg.input.id_column,
        max_chars=cfg.input.max_chars,
        label=str(input_path),
    )
    info = {"path": str(input_path.resolve()), "shape": ing.shape, "text_source": ing.text_source}
    tx = taxonomer if taxonomer is not None else Taxonomer(fit_cfg, progress=progress)
    tx.fit_ingested(ing, input_info=info, timer=Timer(verbose=progress))
    assignments = tx.assignments_
    ids = assignments["conversation_id"].to_list()
    leaves = sorted(set(assignments["leaf_id"].to_list()))
    pos = {lf: i for i, lf in enumerate(leaves)}
    return _Fit(
        taxonomer=tx,
        row_of_id={cid: i for i, cid in enumerate(ids)},
        assignments=assignments,
        embeddings=np.asarray(tx.embeddings_, dtype=np.float32),
        space=np.asarray(tx.space_, dtype=np.float32),
        leaf_index=np.array([pos[lf] for lf in assignments["leaf_id"].to_list()], dtype=np.int32),
    )


def _fitted_table(fit: _Fit, rows: np.ndarray, fit_rows: np.ndarray) -> Any:
    """Fitted rows in the placed-batch layout, so both kinds are written by one code path."""
    import pyarrow as pa

    from bailclio.placer import placed_table

    a = fit.assignments[fit_rows.tolist()] if len(fit_rows) else fit.assignments.head(0)
    n = len(fit_rows)
    cols = {
        "leaf": fit.leaf_index[fit_rows],
        "is_outlier": a["is_outlier"].to_numpy().astype(bool),
        "outlier_score": a["outlier_score"].to_numpy().astype(np.float32),
        "x": a["x"].to_numpy().astype(np.float32),
        "y": a["y"].to_numpy().astype(np.float32),
        "distance": np.full(n, np.nan, dtype=np.float32),
        "confidence": np.full(n, np.nan, dtype=np.float32),
        "beyond": np.zeros(n, dtype=bool),
        "vector": fit.embeddings[fit_rows],
        "space": fit.space[fit_rows],
    }
    return placed_table(rows, cols).append_column("fitted", pa.array(np.ones(n, dtype=bool)))


def run_sampled(
    input_path: str | Path,
    out: str | Path,
    cfg: Config,
    plan: SamplePlan,
    *,
    force: bool = False,
    progress: bool = True,
    taxonomer: Any = None,
) -> tuple[Path, dict[str, Any], Any, pl.DataFrame]:
    """Fit ``plan``'s sample and place every other row (see the module docstring); returns the
    run directory, its manifest, taxonomy and assignments. ``taxonomer``: a Taxonomer with other
    stages than the defaults, used for the fit and for embedding the placed rows."""
    from bailclio.placer import Placer, placer_state
    from bailclio.rundir import prepare_out_dir
    from bailclio.stream import accepted_chunks

    t_all = time.perf_counter()
    input_path = Path(input_path)
    timings: dict[str, float] = {}
    out_dir = prepare_out_dir(out, force)
    work = out_dir / WORK
    work.mkdir()
    for sub in ("conv", "todo", "placed"):
        (work / sub).mkdir()
    _log(
        f"{plan.n_records} rows: fitting on a sample of {plan.size} (seed {cfg.seed}"
        + (f", stratified by '{plan.stratify}'" if plan.stratify else "")
        + "), placing the rest"
    )

    t0 = time.perf_counter()
    fit = _fit(input_path, plan, cfg, progress, taxonomer)
    tx = fit.taxonomer
    timings["fit"] = round(time.perf_counter() - t0, 3)
    state = placer_state(tx.run_, vectors=fit.embeddings, space=fit.space, embedder=tx.embedder)
    engine = cfg.scale.engine

    # Stream every row: fitted rows take their fitted result, the others are placed.
    t0 = time.perf_counter()
    placer = Placer(state) if engine == "local" else None
    stats: dict[str, int] = {}
    rejects_path = out_dir / rundir.REJECTS
    n_rejects = 0
    part = 0
    with rejects_path.open("w", encoding="utf-8") as rej_fh:
        for chunk in accepted_chunks(
            input_path,
            text_column=cfg.input.text_column,
            id_column=cfg.input.id_column,
            limit=cfg.input.limit if plan.selection is None else None,
            max_chars=cfg.input.max_chars,
            chunk_rows=cfg.scale.chunk_rows,
            stats=stats,
            max_record_bytes=cfg.input.max_record_bytes,
            select=None if plan.selection is None else plan.selection.indices,
        ):
            for rej in chunk.rejects:
                rej_fh.write(json.dumps(rej, ensure_ascii=False, default=str) + "\n")
            n_rejects += len(chunk.rejects)
            frame = chunk.frame
            if frame.height == 0:
                continue
            _stage_chunk(frame, chunk.first_row, part, fit, placer, work)
            part += 1
            if progress:
                _log(f"read {stats['rows_read']}/{plan.n_records} rows ({stats['accepted']} accepted)")
    embed_stats = {k: round(v, 3) for k, v in placer.stats.items()} if placer is not None else {}
    if engine == "ray":
        from bailclio.scale_ray import place_with_ray

        embed_stats = place_with_ray(work / "todo", work / "placed", state, cfg, progress=progress)
    timings["place"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    n_rows = stats["accepted"]
    written = _write_run(out_dir, work, fit, state, n_rows)
    timings["write"] = round(time.perf_counter() - t0, 3)
    if not n_rejects:
        rejects_path.unlink()

    manifest = _manifest(input_path, cfg, plan, tx.manifest_, stats, n_rejects, written, embed_stats)
    manifest["scale"]["threshold"] = state.threshold
    manifest["timings_s"] = {
        **{f"fit {k}": v for k, v in tx.manifest_["timings_s"].items()},
        **timings,
        "total": round(time.perf_counter() - t_all, 3),
    }
    shutil.rmtree(work)
    rundir.write_manifest(out_dir, manifest)
    stream = rundir.RunStream(out_dir)
    assignments = stream.read_assignments()

    return out_dir, manifest, stream.read_taxonomy(), assignments


def _stage_chunk(frame: pl.DataFrame, first_row: int, part: int, fit: _Fit, placer: Any, work: Path) -> None:
    """Write one accepted chunk into the work folder: its rows, the fitted rows' results, and the
    other rows placed now (local engine) or left to place (Ray)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bailclio.placer import placed_table

    frame.write_parquet(work / "conv" / f"{part:06d}.parquet")
    rows = np.arange(first_row, first_row + frame.height, dtype=np.int64)
    fit_rows = np.array([fit.row_of_id.get(c, -1) for c in frame["conversation_id"].to_list()])
    is_fit = fit_rows >= 0
    pq.write_table(
        _fitted_table(fit, rows[is_fit], fit_rows[is_fit]), work / "placed" / f"f{part:06d}.parquet"
    )
    todo_rows = rows[~is_fit]
    todo_texts = frame["text"].filter(pl.Series(~is_fit)).to_list()
    if placer is not None and len(todo_rows):
        table = placed_table(todo_rows, placer(todo_texts))
        table = table.append_column("fitted", pa.array(np.zeros(len(todo_rows), dtype=bool)))
        pq.write_table(table, work / "placed" / f"p{part:06d}.parquet")
    elif len(todo_rows):
        pl.DataFrame({"row": todo_rows, "text": todo_texts}).write_parquet(
            work / "todo" / f"{part:06d}.parquet"
        )


def _write_run(out_dir: Path, work: Path, fit: _Fit, state: Any, n_rows: int) -> dict[str, Any]:
    """conversations, assignments, vectors and the re-counted taxonomy, in input order."""
    import pyarrow.parquet as pq

    from bailclio.placer import vectors_of
    from bailclio.taxonomy.model import Taxonomy

    stream = rundir.RunStream(out_dir)
    stream.write_conversations(sorted((work / "conv").glob("*.parquet")))

    # Vectors go straight to their rows; the per-row scalars are gathered, sorted, then written.
    dim, d_space = fit.embeddings.shape[1], fit.space.shape[1]
    emb, space = stream.open_vectors(n_rows, dim, d_space)
    scalars = []
    seen = np.zeros(n_rows, dtype=np.int32)
    for p in sorted((work / "placed").rglob("*.parquet")):
        table = pq.read_table(p)
        if table.num_rows == 0:
            continue
        rows = table.column("row").to_numpy()
        emb[rows] = vectors_of(table, "vector")
        space[rows] = vectors_of(table, "space")
        np.add.at(seen, rows, 1)
        scalars.append(pl.from_arrow(table.drop_columns(["vector", "space"])))
    emb.flush()
    space.flush()
    del emb, space
    if (seen != 1).any():
        bad = int(np.flatnonzero(seen != 1)[0])
        raise RuntimeError(f"row {bad} was placed {int(seen[bad])} times; the run is incomplete")
    table = pl.concat(scalars).sort("row")

    tax = Taxonomy.from_dict(fit.taxonomer.taxonomy_.to_dict())  # a copy, re-counted below
    leaves = state.reference.leaves
    depth = tax.depth
    paths = [[n.id for n in tax.path(lf)] for lf in leaves]
    leaf_counts = np.bincount(table["leaf"].to_numpy(), minlength=len(leaves))
    sizes: Counter[str] = Counter()
    for path, count in zip(paths, leaf_counts, strict=True):
        for nid in path:
            sizes[nid] += int(count)
    for node in tax.nodes:
        node.size = sizes.get(node.id, 0)
        node.extra["share"] = round(node.size / max(n_rows, 1), 6)
    tax.meta["fitted_rows"] = int(table["fitted"].sum())
    stream.write_taxonomy(tax)

    for start in range(0, n_rows, WRITE_ROWS):
        block = table.slice(start, WRITE_ROWS)
        ids = stream.conversation_ids(start, WRITE_ROWS)
        stream.add_assignments(
            rundir.assignments_table(
                tax,
                ids,
                [leaves[i] for i in block["leaf"].to_numpy()],
                is_outlier=block["is_outlier"].to_numpy(),
                outlier_score=block["outlier_score"].to_numpy(),
                x=block["x"].to_numpy(),
                y=block["y"].to_numpy(),
                extra={
                    "fitted": block["fitted"],
                    "distance": block["distance"].cast(pl.Float32).fill_nan(None),
                    "confidence": block["confidence"].cast(pl.Float32).fill_nan(None),
                },
            )
        )
    stream.close()
    fitted = table["fitted"].to_numpy()
    outlier = table["is_outlier"].to_numpy()
    return {
        "fitted": int(fitted.sum()),
        "placed": int((~fitted).sum()),
        "outliers": int(outlier.sum()),
        "placed_outliers": int((outlier & ~fitted).sum()),
        "placed_beyond_threshold": int(table["beyond"].sum()),
        "nodes_per_level": [len(tax.level(lv)) for lv in range(depth)],
    }


def _manifest(
    input_path: Path,
    cfg: Config,
    plan: SamplePlan,
    fit_manifest: dict[str, Any],
    stats: dict[str, int],
    n_rejects: int,
    written: dict[str, Any],
    embed_stats: dict[str, Any],
) -> dict[str, Any]:
    fit_counts = fit_manifest["counts"]
    n_rows = stats["accepted"]
    counts = {
        **fit_counts,
        "rows_read": stats["rows_read"],
        "rejected": n_rejects,
        "accepted": n_rows,
        "fitted": written["fitted"],
        "placed": written["placed"],
        "clustered": n_rows - written["outliers"],
        "outliers": written["outliers"],
    }
    manifest = dict(fit_manifest)
    manifest["input"] = {
        **fit_manifest["input"],
        "path": str(input_path.resolve()),
        "sha256": file_sha256(input_path),
        "bytes": input_path.stat().st_size,
    }
    if plan.selection is not None:
        manifest["input"]["selection"] = plan.selection.describe()
    elif cfg.input.limit is not None:
        manifest["input"]["selection"] = {
            "shuffle": False,
            "limit": cfg.input.limit,
            "taken": stats["rows_read"],
            "first_rows": True,
        }
    manifest["config"] = cfg.model_dump(mode="json")
    manifest["counts"] = counts
    manifest["embedding"] = {
        **fit_manifest["embedding"],
        "fit": fit_manifest["embedding"],
        "placed": embed_stats,
    }
    manifest["scale"] = {
        "engine": cfg.scale.engine,
        "fit_sample": plan.size,
        "records": plan.n_records,
        "seed": cfg.seed,
        "stratify": plan.stratify,
        "strata": plan.strata,
        "chunk_rows": cfg.scale.chunk_rows,
        "fitted": written["fitted"],
        "placed": written["placed"],
        "placed_outliers": written["placed_outliers"],
        "placed_beyond_threshold": written["placed_beyond_threshold"],
        "fit_counts": fit_counts,
        "rows_column": "assignments.parquet: fitted",
    }
    return manifest
