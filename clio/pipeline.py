"""``run(input, out, config)``: input file -> run directory, the file-based face of
:class:`bailclio.Taxonomer`.

Stages: ingest -> deduplicate -> embed (cached) -> reduce (UMAP) -> cluster (HDBSCAN) ->
hierarchy (Ward on leaf centroids) -> names (c-TF-IDF keyphrases + exemplars) -> write.
Exact duplicate texts are embedded and clustered once; every input row still gets its assignment.
With ``llm.backend`` set (:mod:`bailclio.llmnaming.stage`), facet summaries are written before embedding and
clustered instead of the texts, and LLM names replace the keyphrase names after the hierarchy;
without it, nothing of this runs and the outputs are those of the keyphrase pipeline.
The manifest (written last, so a half-written directory is never mistaken for a run) records the
config, package versions, seed, input hash, counts, per-stage timings and the run's ``status``
("complete", or "incomplete" when part of the LLM stage failed, with the reasons).
The run is built in a hidden staging directory beside ``out`` and takes its place in one rename
once complete (:func:`bailclio.rundir.building`): a failed or killed run leaves the previous run
at ``out`` as it was.

Several inputs (files, ``bailclio detect`` output folders) make one taxonomy over their union,
each row keeping its input's name in ``source`` (:func:`read_inputs`).

Example::

    >>> from bailclio.config import Config
    >>> result = run("data/bailbench.csv", "runs/bb", Config())   # doctest: +SKIP
    >>> result.manifest["counts"]["accepted"]                      # doctest: +SKIP
    1630
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.ingest import Ingested, input_selection, read_input
from bailclio.provenance import file_sha256
from bailclio.taxonomer import Taxonomer, Timer
from bailclio.taxonomy.model import Taxonomy

log = logging.getLogger("bailclio")


@dataclass
class RunResult:
    path: Path
    manifest: dict[str, Any]
    taxonomy: Taxonomy
    assignments: pl.DataFrame
    rejects: list[dict[str, Any]] = field(default_factory=list)


InputPaths = str | Path | Sequence[str | Path]
SOURCE = "source"  # the column naming each row's input when a run has several


def run(
    input_path: InputPaths,
    out: str | Path,
    cfg: Config,
    *,
    force: bool = False,
    progress: bool = True,
    taxonomer: Taxonomer | None = None,
) -> RunResult:
    """Build the taxonomy of ``input_path`` into the run directory ``out`` (refused when ``out``
    holds anything but a run, replaced with ``force``). ``taxonomer`` (configured with ``cfg``)
    supplies other stages than the defaults. Above ``[scale] fit_sample`` rows the taxonomy is
    fitted on a sample and the other rows are placed in it (:mod:`bailclio.scale`), by
    ``taxonomer``'s stages when one is given.

    ``input_path`` may be several inputs (files, or ``bailclio detect`` output folders, read
    through their bails file): one taxonomy is built over their union (:func:`read_inputs`)."""
    from bailclio import rundir

    dest = rundir.check_out_dir(out, force)  # refused before any work
    paths = input_files(input_path)
    if len(paths) > 1:
        check_unsampled(paths, cfg)
    else:
        from bailclio.scale import run_sampled, sampling_plan

        plan = sampling_plan(paths[0], cfg)
        if plan is not None:
            with rundir.building(dest, force) as staging:
                _, manifest, taxonomy, assignments = run_sampled(
                    paths[0], staging, cfg, plan, force=True, progress=progress, taxonomer=taxonomer
                )
            return RunResult(dest, manifest, taxonomy, assignments)
    with rundir.building(dest, force) as staging:
        result, tx = _run_into(staging, paths, cfg, progress=progress, taxonomer=taxonomer)
    tx.path_ = dest
    result.path = dest
    return result


def input_files(input_path: InputPaths) -> list[Path]:
    """The input files: a ``bailclio detect`` output folder stands for its bails file; anything
    else must be a file. The same file twice is an error."""
    from bailclio import rundir

    given = [input_path] if isinstance(input_path, str | Path) else list(input_path)
    if not given:
        raise UserError("no input given")
    out: list[Path] = []
    for item in given:
        p = Path(item)
        if p.is_dir():
            if not (p / rundir.BAILS).is_file():
                raise UserError(f"{p}: a folder, but not a `bailclio detect` output (no {rundir.BAILS})")
            p = p / rundir.BAILS
        elif not p.exists():
            raise UserError(f"{p}: no such file")
        if any(p.resolve() == q.resolve() for q in out):
            raise UserError(f"{item}: given twice")
        out.append(p)
    return out


def source_labels(paths: list[Path]) -> list[str]:
    """What the ``source`` column calls each input: its file name (a detect folder's name for its
    bails file), or the path as given where two inputs share a name.

    >>> source_labels([Path("a/gpt.jsonl"), Path("claude.jsonl"), Path("det/bails.parquet")])
    ['gpt.jsonl', 'claude.jsonl', 'det']
    >>> source_labels([Path("a/x.csv"), Path("b/x.csv")])
    ['a/x.csv', 'b/x.csv']
    """
    from bailclio import rundir

    names = [p.parent.name if p.name == rundir.BAILS and p.parent.name else p.name for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def check_unsampled(paths: list[Path], cfg: Config) -> None:
    """Several inputs are fitted whole: above ``[scale] fit_sample`` rows in all, that is an error."""
    from bailclio.stream import count_records

    size = cfg.scale.fit_sample
    if size <= 0 or cfg.llm.backend != "none":
        return
    per_input = [count_records(p) for p in paths]
    if cfg.input.limit is not None:
        per_input = [min(n, cfg.input.limit) for n in per_input]
    if sum(per_input) > size:
        raise UserError(
            f"{sum(per_input)} rows in {len(paths)} inputs is above [scale] fit_sample = {size}: "
            "several inputs are not sampled yet; fit them whole with --sample 0, or join them into "
            f"one file with a '{SOURCE}' column"
        )


def read_inputs(paths: list[Path], cfg: Config, *, progress: bool = True) -> tuple[Ingested, dict[str, Any]]:
    """Read every input and join them: each row keeps its input's name in ``source`` and its own id
    in ``source_id``, and its ``conversation_id`` becomes ``<source>:<id>``, so the same id in two
    inputs never collides (an input's own ``source`` or ``source_id`` column is kept as ``input_source``,
    ``input_source_id``). Every
    input's rows are checked as a single file's are (``--limit`` counts per input); rejects name
    their ``source``. The inputs must all be conversations or all texts."""
    labels = source_labels(paths)
    frames, rejects, infos, shapes = [], [], [], {}
    rows_read = 0
    for path, label in zip(paths, labels, strict=True):
        ing, selection = _read_one(path, cfg)
        shapes.setdefault(ing.shape, label)
        frame = ing.frame
        kept = {c: f"input_{c}" for c in (SOURCE, "source_id") if c in frame.columns}
        frame = frame.rename(kept)  # the input's own columns of these names stay, renamed
        frame = frame.with_columns(
            (pl.lit(f"{label}:") + pl.col("conversation_id")).alias("conversation_id"),
            pl.lit(label).alias(SOURCE),
            pl.col("conversation_id").alias("source_id"),
        )
        frames.append(frame)
        rejects.extend({SOURCE: label, **r} for r in ing.rejects)
        rows_read += ing.rows_read
        info = {SOURCE: label, **_file_info(path), "rows_read": ing.rows_read, "rejected": len(ing.rejects)}
        infos.append({**info, "accepted": ing.frame.height, "text_source": ing.text_source})
        if selection is not None:
            infos[-1]["selection"] = selection
        if progress:
            log.info(f"[bailclio] {label}: {ing.frame.height} rows ({len(ing.rejects)} rejected)")
    if len(shapes) > 1:
        raise UserError(
            f"inputs mix conversations ({shapes['conversation']}) and texts ({shapes['text']}): "
            "give inputs of one shape"
        )
    try:
        frame = pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise UserError(f"the inputs' columns cannot be joined: {exc}".splitlines()[0]) from exc
    text_sources = {i["text_source"] for i in infos}
    shape = next(iter(shapes))
    joined = Ingested(
        frame, rejects, shape, text_sources.pop() if len(text_sources) == 1 else "text", rows_read
    )
    digest = hashlib.sha256("".join(i["sha256"] for i in infos).encode()).hexdigest()
    input_info = {
        "path": ", ".join(labels),
        "sha256": digest,
        "bytes": sum(i["bytes"] for i in infos),
        "shape": shape,
        "text_source": joined.text_source,
        "inputs": infos,
    }
    return joined, input_info


def _read_one(path: Path, cfg: Config) -> tuple[Ingested, dict[str, Any] | None]:
    """One input's rows, and which rows ``--limit`` (with ``--shuffle``) took, for the manifest."""
    selection = input_selection(path, cfg)
    ing = read_input(
        path,
        text_column=cfg.input.text_column,
        id_column=cfg.input.id_column,
        limit=None if selection is not None else cfg.input.limit,
        max_chars=cfg.input.max_chars,
        max_record_bytes=cfg.input.max_record_bytes,
        select=None if selection is None else selection.indices,
    )
    if selection is not None:
        return ing, selection.describe()
    if cfg.input.limit is None:
        return ing, None
    return ing, {"shuffle": False, "limit": cfg.input.limit, "taken": ing.rows_read, "first_rows": True}


def _file_info(path: Path) -> dict[str, Any]:
    return {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def _run_into(
    out_dir: Path, paths: list[Path], cfg: Config, *, progress: bool, taxonomer: Taxonomer | None
) -> tuple[RunResult, Taxonomer]:
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    tx = taxonomer or Taxonomer(cfg, progress=progress)
    timer = Timer(verbose=progress)
    if len(paths) == 1:
        ing, selection = timer.stage("read input", lambda: _read_one(paths[0], cfg), announce=False)
        input_info = {**_file_info(paths[0]), "shape": ing.shape, "text_source": ing.text_source}
        if selection is not None:
            input_info["selection"] = selection
    else:
        ing, input_info = timer.stage(
            "read input", lambda: read_inputs(paths, cfg, progress=progress), announce=False
        )
    if ing.rejects:
        from bailclio import rundir

        rundir.write_rejects(out_dir, ing.rejects)
    tx.fit_ingested(ing, input_info=input_info, timer=timer, started=started)
    tx.write(out_dir, timer=timer, t_start=t_all)
    if tx.budget_message_:
        log.warning(f"[bailclio] {tx.budget_message_}")
    assert tx.taxonomy_ is not None and tx.assignments_ is not None
    return RunResult(out_dir, tx.manifest_, tx.taxonomy_, tx.assignments_, ing.rejects), tx
