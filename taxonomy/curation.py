"""Hand edits to a run's taxonomy, kept as an edit log in ``RUNDIR/curation.json``.

The pipeline's files are never rewritten: the log is replayed on load (``bailclio.rundir.load_run``
replays it with :func:`bailclio.taxonomy.edits.apply_edits`), so every command that reads a run
sees the curated taxonomy and an edit can be undone by dropping it from the log. ``curation.json``::

    {"format_version": 1,
     "edits": [
       {"op": "rename",   "node_id": "L3", "name": "Requests for weapons", "at": "<ISO time>"},
       {"op": "describe", "node_id": "L3", "description": "...", "at": "..."},
       {"op": "merge",    "source": "L4", "target": "L3", "at": "..."},
       {"op": "move",     "node_id": "L5", "parent_id": "M2", "at": "..."}
     ]}

``merge`` folds ``source`` into its sibling ``target`` (same parent, same level): the source's
children and conversations go to the target, and the source disappears. ``move`` re-parents a leaf
under a node one level above it. After replay, every conversation's path is recomputed from its
(possibly merged) leaf, node sizes and shares are recounted, and intermediate nodes left without
children are dropped.

Example::

    >>> run = load_run("runs/demo", curated=False)                 # doctest: +SKIP
    >>> rename_node(run, "L3", "Requests for weapons")             # doctest: +SKIP
    >>> load_run("runs/demo").taxonomy.by_id["L3"].name            # doctest: +SKIP
    'Requests for weapons'
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bailclio import rundir
from bailclio.rundir import Run
from bailclio.taxonomy.edits import (
    CURATION_VERSION,
    MAX_DESCRIPTION,
    MAX_NAME,
    OPS,
    CurationError,
    _apply_edit,
    apply_edits,
    recount,
    replay,
)
from bailclio.taxonomy.model import Taxonomy

__all__ = [
    "CURATION_FILE",
    "CURATION_VERSION",
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "OPS",
    "CurationError",
    "append_edit",
    "apply_curation",
    "describe_node",
    "load_edits",
    "merge_nodes",
    "move_leaf",
    "recount",
    "rename_node",
    "replay",
    "save_edits",
    "undo_last",
]

CURATION_FILE = rundir.CURATION


# --------------------------------------------------------------------------- the log file


def curation_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CURATION_FILE


def load_edits(run_dir: str | Path) -> list[dict[str, Any]]:
    """The edits recorded for a run directory (empty when there is no ``curation.json``)."""
    return rundir.read_edits(run_dir)


def save_edits(run_dir: str | Path, edits: list[dict[str, Any]]) -> Path:
    return rundir.write_edits(run_dir, edits)


def apply_curation(run: Run) -> Run:
    """A new Run with ``curation.json`` replayed: edited taxonomy, re-pathed assignments, sizes."""
    return apply_edits(run, load_edits(run.path), str(curation_path(run.path)))


# --------------------------------------------------------------------------- appending edits


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_edit(run: Run, edit: dict[str, Any]) -> dict[str, Any]:
    """Validate ``edit`` against the run's curated taxonomy, then append it to ``curation.json``.

    The check replays the whole log on the pipeline's ``taxonomy.json`` first, so ``run`` may be
    loaded with or without curation; an invalid edit raises :class:`CurationError` and is not saved.
    """
    edits = load_edits(run.path)
    tax, _ = replay(Taxonomy.load(run.file(rundir.TAXONOMY)), edits, str(curation_path(run.path)))
    _apply_edit(tax, edit, {})
    record = {**edit, "at": _now()}
    save_edits(run.path, [*edits, record])
    return record


def rename_node(run: Run, node_id: str, name: str) -> dict[str, Any]:
    return append_edit(run, {"op": "rename", "node_id": node_id, "name": name})


def describe_node(run: Run, node_id: str, description: str) -> dict[str, Any]:
    return append_edit(run, {"op": "describe", "node_id": node_id, "description": description})


def merge_nodes(run: Run, source: str, target: str) -> dict[str, Any]:
    """Fold ``source`` into its sibling ``target``."""
    return append_edit(run, {"op": "merge", "source": source, "target": target})


def move_leaf(run: Run, node_id: str, parent_id: str) -> dict[str, Any]:
    return append_edit(run, {"op": "move", "node_id": node_id, "parent_id": parent_id})


def undo_last(run_dir: str | Path) -> dict[str, Any] | None:
    """Drop the last edit; returns it (None when the log is empty)."""
    edits = load_edits(run_dir)
    if not edits:
        return None
    save_edits(run_dir, edits[:-1])
    return edits[-1]
