"""The curation edit log's rules, with no file in sight: check a log, replay it on a taxonomy,
re-path the assignments and recount the sizes.

:mod:`bailclio.rundir` reads ``curation.json`` and replays it on load with :func:`apply_edits`;
:mod:`bailclio.taxonomy.curation` is the API that records new edits (see there for the log's
format and the meaning of each op).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

import polars as pl

from bailclio.errors import UserError
from bailclio.taxonomy.model import Node, Taxonomy

if TYPE_CHECKING:
    from bailclio.rundir import Run

CURATION_VERSION = 1
OPS = ("rename", "describe", "merge", "move")
MAX_NAME = 200
MAX_DESCRIPTION = 5000


class CurationError(UserError):
    """An edit that cannot be applied (unknown node, merging non-siblings, ...)."""


def check_log(data: Any, where: str) -> list[dict[str, Any]]:
    """The edits of a parsed ``curation.json`` (``where`` names it in errors)."""
    if not isinstance(data, dict) or not isinstance(data.get("edits"), list):
        raise CurationError(f"{where}: expected an object with an 'edits' list")
    if data.get("format_version", CURATION_VERSION) != CURATION_VERSION:
        raise CurationError(f"{where}: format_version {data.get('format_version')!r} is not supported")
    for i, edit in enumerate(data["edits"]):
        if not isinstance(edit, dict) or edit.get("op") not in OPS:
            raise CurationError(f"{where}: edit {i}: 'op' must be one of {', '.join(OPS)}")
    return list(data["edits"])


def log_document(edits: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``curation.json`` holds for ``edits``."""
    return {"format_version": CURATION_VERSION, "edits": edits}


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
    tax: Taxonomy, edits: list[dict[str, Any]], source: str = "curation log"
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


def apply_edits(run: Run, edits: list[dict[str, Any]], source: str) -> Run:
    """A new Run with ``edits`` replayed: edited taxonomy, re-pathed assignments, sizes."""
    if not edits:
        return run
    tax, leaf_map = replay(run.taxonomy, edits, source)
    assignments = _repath(run.assignments, tax, leaf_map)
    return dataclasses.replace(
        run,
        manifest={**run.manifest, "curation": {"edits": len(edits)}},
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
