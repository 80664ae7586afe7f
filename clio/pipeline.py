"""``run(input, out, config)``: input file -> run directory, the file-based face of
:class:`bailclio.Taxonomer`.

Stages: ingest -> deduplicate -> embed (cached) -> reduce (UMAP) -> cluster (HDBSCAN) ->
hierarchy (Ward on leaf centroids) -> names (c-TF-IDF keyphrases + exemplars) -> write.
Exact duplicate texts are embedded and clustered once; every input row still gets its assignment.
With ``llm.backend`` set (:mod:`bailclio.llm_stage`), facet summaries are written before embedding and
clustered instead of the texts, and LLM names replace the keyphrase names after the hierarchy;
without it, nothing of this runs and the outputs are those of the keyphrase pipeline.
The manifest (written last, so a half-written directory is never mistaken for a run) records the
config, package versions, seed, input hash, counts, per-stage timings and the run's ``status``
("complete", or "incomplete" when part of the LLM stage failed, with the reasons).
The run is built in a hidden staging directory beside ``out`` and takes its place in one rename
once complete (:func:`bailclio.rundir.building`): a failed or killed run leaves the previous run
at ``out`` as it was.

Example::

    >>> from bailclio.config import Config
    >>> result = run("data/bailbench.csv", "runs/bb", Config())   # doctest: +SKIP
    >>> result.manifest["counts"]["accepted"]                      # doctest: +SKIP
    1630
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bailclio.config import Config
from bailclio.ingest import Ingested, read_input
from bailclio.naming import name_levels as name_levels  # re-exported
from bailclio.provenance import VERSIONED_PACKAGES as VERSIONED_PACKAGES  # re-exported
from bailclio.provenance import file_sha256
from bailclio.rundir import prepare_out_dir as prepare_out_dir  # re-exported
from bailclio.taxonomer import OUTLIER_NAME as OUTLIER_NAME  # re-exported
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


def run(
    input_path: str | Path,
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
    fitted on a sample and the other rows are placed in it (:mod:`bailclio.scale`)."""
    from bailclio import rundir

    dest = rundir.check_out_dir(out, force)  # refused before any work
    if taxonomer is None:
        from bailclio.scale import run_sampled, sampling_plan

        plan = sampling_plan(input_path, cfg)
        if plan is not None:
            with rundir.building(dest, force) as staging:
                _, manifest, taxonomy, assignments = run_sampled(
                    input_path, staging, cfg, plan, force=True, progress=progress
                )
            return RunResult(dest, manifest, taxonomy, assignments)
    with rundir.building(dest, force) as staging:
        result, tx = _run_into(staging, input_path, cfg, progress=progress, taxonomer=taxonomer)
    tx.path_ = dest
    result.path = dest
    return result


def _run_into(
    out_dir: Path, input_path: str | Path, cfg: Config, *, progress: bool, taxonomer: Taxonomer | None
) -> tuple[RunResult, Taxonomer]:
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    tx = taxonomer or Taxonomer(cfg, progress=progress)
    timer = Timer(verbose=progress)
    input_path = Path(input_path)

    ing: Ingested = timer.stage(
        "read input",
        lambda: read_input(
            input_path,
            text_column=cfg.input.text_column,
            id_column=cfg.input.id_column,
            limit=cfg.input.limit,
            max_chars=cfg.input.max_chars,
        ),
        announce=False,
    )
    if ing.rejects:
        from bailclio import rundir

        rundir.write_rejects(out_dir, ing.rejects)
    input_info = {
        "path": str(input_path.resolve()),
        "sha256": file_sha256(input_path),
        "bytes": input_path.stat().st_size,
        "shape": ing.shape,
        "text_source": ing.text_source,
    }
    tx.fit_ingested(ing, input_info=input_info, timer=timer, started=started)
    tx.write(out_dir, timer=timer, t_start=t_all)
    if tx.budget_message_:
        log.warning(f"[bailclio] {tx.budget_message_}")
    assert tx.taxonomy_ is not None and tx.assignments_ is not None
    return RunResult(out_dir, tx.manifest_, tx.taxonomy_, tx.assignments_, ing.rejects), tx
