"""Hand edits to a run's taxonomy, kept as an edit log in ``RUNDIR/curation.json``.

The pipeline's files are never rewritten: the log is replayed on load (``bailclio.rundir.load_run``
calls :func:`apply_curation`), so every command that reads a run sees the curated taxonomy and an
edit can be undone by dropping it from the log. ``curation.json``::

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

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from bailclio.errors import UserError
from bailclio.taxonomy.model import Node, Taxonomy

if TYPE_CHECKING:
    from bailclio.rundir import Run

CURATION_FILE = "curation.json"
CURATION_VERSION = 1
OPS = ("rename", "describe", "merge", "move")
MAX_NAME = 200
MAX_DESCRIPTION = 5000


class CurationError(UserError):
    """An edit that cannot be applied (unknown node, merging non-siblings, ...)."""


# --------------------------------------------------------------------------- the log file


def curation_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CURATION_FILE


def load_edits(run_dir: str | Path) -> list[dict[str, Any]]:
    """The edits recorded for a run directory (empty when there is no ``curation.json``)."""
    p = curation_path(run_dir)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CurationError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("edits"), list):
        raise CurationError(f"{p}: expected an object with an 'edits' list")
    if data.get("format_version", CURATION_VERSION) != CURATION_VERSION:
        raise CurationError(f"{p}: format_version {data.get('format_version')!r} is not supported")
    for i, edit in enumerate(data["edits"]):
        if not isinstance(edit, dict) or edit.get("op") not in OPS:
            raise CurationError(f"{p}: edit {i}: 'op' must be one of {', '.join(OPS)}")
    return list(data["edits"])


def save_edits(run_dir: str | Path, edits: list[dict[str, Any]]) -> Path:
    from bailclio.rundir import write_json

    p = curation_path(run_dir)
    write_json(p, {"format_version": CURATION_VERSION, "edits": edits})
    return p


# --------------------------------------------------------------------------- replay


def _require(tax: Taxonomy, node_id: Any, what: str) -> Node:
    if not isinstance(node_id, str) or node_id not in tax.by_id:
        raise CurationError(f"{what}: no node '{node_id}'")
    return tax.by_id[node_id]


def _apply_edit(tax: Taxonomy, edit: dict[str, Any], leaf_map: dict[str, str]) -> None:
    """Apply one edit in place to ``tax``; merged leaves are recorded in ``leaf_map``."""
    op = edit.get("op")
    if op == "rename":
        node = _require(tax, edit.get("node_id"), "rename")
        name = edit.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CurationError(f"rename {node.id}: the new name is empty")
        if len(name) > MAX_NAME:
            raise CurationError(f"rename {node.id}: name longer than {MAX_NAME} characters")
        node.name = name.strip()
    elif op == "describe":
        node = _require(tax, edit.get("node_id"), "describe")
        desc = edit.get("description")
        if not isinstance(desc, str):
            raise CurationError(f"describe {node.id}: description must be text")
        if len(desc) > MAX_DESCRIPTION:
            raise CurationError(f"describe {node.id}: longer than {MAX_DESCRIPTION} characters")
        node.description = desc.strip()
    elif op == "merge":
        source = _require(tax, edit.get("source"), "merge source")
        target = _require(tax, edit.get("target"), "merge target")
        if source.id == target.id:
            raise CurationError(f"merge {source.id}: cannot merge a node into itself")
        if source.parent_id != target.parent_id or source.level != target.level:
            raise CurationError(
                f"merge {source.id} into {target.id}: only siblings can be merged "
                f"(parents {source.parent_id} and {target.parent_id})"
            )
        source_children = tax.children(source.id)
        target_children = tax.children(target.id)
        if bool(source_children) != bool(target_children):
            raise CurationError(f"merge {source.id} into {target.id}: cannot merge a leaf with a non-leaf")
        for child in source_children:
            child.parent_id = target.id
        if not source_children:  # two leaves: the source's conversations go to the target
            leaf_map[source.id] = target.id
            for k, v in leaf_map.items():
                if v == source.id:
                    leaf_map[k] = target.id
        target.keywords = list(dict.fromkeys(target.keywords + source.keywords))
        target.exemplar_ids = list(dict.fromkeys(target.exemplar_ids + source.exemplar_ids))
        target.extra["merged_from"] = [*target.extra.get("merged_from", []), source.id]
        tax.nodes.remove(source)
    elif op == "move":
        node = _require(tax, edit.get("node_id"), "move")
        parent = _require(tax, edit.get("parent_id"), f"move {node.id}: new parent")
        if tax.children(node.id):
            raise CurationError(f"move {node.id}: only leaves can be moved")
        if parent.level != node.level - 1:
            raise CurationError(
                f"move {node.id}: the new parent must be one level up (level {node.level - 1}), "
                f"'{parent.id}' is level {parent.level}"
            )
        if parent.id == node.parent_id:
            raise CurationError(f"move {node.id}: it is already under {parent.id}")
        node.parent_id = parent.id
    else:
        raise CurationError(f"unknown edit op {op!r} (expected one of {', '.join(OPS)})")
    tax._reindex()


def _prune_empty(tax: Taxonomy, leaf_level: int) -> None:
    """Drop intermediate nodes that lost all their children (repeat until none is left)."""
    while True:
        empty = [n for n in tax.nodes if n.level < leaf_level and not tax.children(n.id)]
        if not empty:
            return
        drop = {n.id for n in empty}
        tax.nodes = [n for n in tax.nodes if n.id not in drop]
        tax._reindex()


def replay(
    tax: Taxonomy, edits: list[dict[str, Any]], source: str = CURATION_FILE
) -> tuple[Taxonomy, dict[str, str]]:
    """Apply ``edits`` to a copy of ``tax``; returns the new taxonomy and the leaf remapping."""
    out = Taxonomy(copy.deepcopy(tax.nodes), copy.deepcopy(tax.meta))
    leaf_level = tax.depth - 1
    leaf_map: dict[str, str] = {}
    for i, edit in enumerate(edits):
        try:
            _apply_edit(out, edit, leaf_map)
        except CurationError as exc:
            raise CurationError(f"{source}: edit {i} ({edit.get('op')}): {exc}") from exc
        _prune_empty(out, leaf_level)
    return out, leaf_map


def apply_curation(run: Run) -> Run:
    """A new Run with ``curation.json`` replayed: edited taxonomy, re-pathed assignments, sizes."""
    from bailclio.rundir import Run

    edits = load_edits(run.path)
    if not edits:
        return run
    tax, leaf_map = replay(run.taxonomy, edits, str(curation_path(run.path)))
    assignments = _repath(run.assignments, tax, leaf_map)
    return Run(
        path=run.path,
        manifest={**run.manifest, "curation": {"edits": len(edits)}},
        conversations=run.conversations,
        assignments=assignments,
        taxonomy=recount(tax, assignments),
    )


def _repath(assign: pl.DataFrame, tax: Taxonomy, leaf_map: dict[str, str]) -> pl.DataFrame:
    old_leaves = assign["leaf_id"].unique().to_list()
    new_leaf = {lf: leaf_map.get(lf, lf) for lf in old_leaves}
    paths: dict[str, list[str]] = {}
    for old, new in new_leaf.items():
        if new not in tax.by_id:
            raise CurationError(f"assignments: leaf '{old}' has no node in the curated taxonomy")
        paths[old] = [n.id for n in tax.path(new)]
    mapping = pl.DataFrame(
        {
            "leaf_id": list(paths),
            "__path": list(paths.values()),
        },
        schema={"leaf_id": pl.String, "__path": pl.List(pl.String)},
    )
    out = assign.join(mapping, on="leaf_id", how="left", maintain_order="left")
    cols = [pl.col("__path").alias("path"), pl.col("__path").list.last().alias("leaf_id")]
    cols.append(pl.col("__path").list.first().alias("top_id"))
    return out.with_columns(cols).drop("__path").select(assign.columns)


def recount(tax: Taxonomy, assign: pl.DataFrame) -> Taxonomy:
    """Node sizes (and shares) from the leaves up, counted from ``assign``."""
    counts = dict(assign.group_by("leaf_id").len().iter_rows())
    total = max(assign.height, 1)
    for node in sorted(tax.nodes, key=lambda n: -n.level):
        kids = tax.children(node.id)
        node.size = sum(k.size for k in kids) if kids else int(counts.get(node.id, 0))
        if "share" in node.extra:
            node.extra["share"] = round(node.size / total, 6)
    return tax


# --------------------------------------------------------------------------- appending edits


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_edit(run: Run, edit: dict[str, Any]) -> dict[str, Any]:
    """Validate ``edit`` against the run's curated taxonomy, then append it to ``curation.json``.

    The check replays the whole log on the pipeline's ``taxonomy.json`` first, so ``run`` may be
    loaded with or without curation; an invalid edit raises :class:`CurationError` and is not saved.
    """
    from bailclio.rundir import TAXONOMY

    edits = load_edits(run.path)
    tax, _ = replay(Taxonomy.load(run.path / TAXONOMY), edits, str(curation_path(run.path)))
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
