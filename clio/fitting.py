"""The pieces of a :class:`~bailclio.Taxonomer` fit that are plain data work: the distinct texts
(exact duplicates are clustered once), the hierarchy a builder or a namer gives, the taxonomy's
nodes and the assignments table (one row per conversation), the per-stage timer."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bailclio.errors import UserError
from bailclio.ingest import Ingested
from bailclio.stages import Hierarchy, HierarchyBuilder
from bailclio.taxonomy.model import Node, node_id

log = logging.getLogger("bailclio")

OUTLIER_NAME = "Unclustered (HDBSCAN noise)"
PRECOMPUTED = "precomputed"


@dataclass
class Distinct:
    """The distinct texts of the rows: ``row_to_unique[r]`` is row r's text, ``first_row[u]`` the
    first row holding text u."""

    texts: list[str]
    row_to_unique: np.ndarray
    first_row: np.ndarray


def distinct_texts(row_texts: list[str]) -> Distinct:
    index: dict[str, int] = {}
    row_to_unique = np.empty(len(row_texts), dtype=np.int64)
    for i, t in enumerate(row_texts):
        row_to_unique[i] = index.setdefault(t, len(index))
    first_row = np.full(len(index), -1, dtype=np.int64)
    for r in range(len(row_texts) - 1, -1, -1):
        first_row[row_to_unique[r]] = r
    return Distinct(list(index), row_to_unique, first_row)


def precomputed_vectors(row_vectors: np.ndarray, d: Distinct) -> tuple[np.ndarray, dict[str, Any]]:
    """The given row vectors of the distinct texts (the first row of each gives its vector)."""
    vectors = np.ascontiguousarray(row_vectors[d.first_row], dtype=np.float32)
    stats = {
        "model": PRECOMPUTED,
        "model_key": PRECOMPUTED,
        "texts": len(d.texts),
        "cache_hits": 0,
        "computed": 0,
        "dim": int(vectors.shape[1]),
        "seconds": 0.0,
    }
    return vectors, stats


def leaves_with_noise(labels: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Cluster labels with the outliers (-1) kept apart in one extra leaf, and that leaf's number."""
    leaves = labels.copy()
    if not (leaves < 0).any():
        return leaves, None
    noise = int(leaves.max()) + 1
    leaves[leaves < 0] = noise
    return leaves, noise


def build_tree(
    builder: HierarchyBuilder, space: np.ndarray, leaves: np.ndarray, vectors: np.ndarray
) -> Hierarchy:
    """``builder.build(space, leaves)``, with the embeddings as ``vectors=`` where it takes them."""
    try:
        takes_vectors = "vectors" in inspect.signature(builder.build).parameters
    except (TypeError, ValueError):
        takes_vectors = False
    if takes_vectors:
        return builder.build(space, leaves, vectors=vectors)
    return builder.build(space, leaves)


def checked_tree(new: Any, old: Any) -> Any:
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


def taxonomy_nodes(
    levels: list[dict[int, dict[str, Any]]],
    naming: Any,
    hier: Hierarchy,
    row_groups: list[np.ndarray],
    ids: list[Any],
    first_row: np.ndarray,
    outlier_leaf: int | None,
    stability: list[np.ndarray] | None = None,
) -> list[Node]:
    """The nodes of every level: keyphrase metadata (``levels``), the namer's names, row counts
    and, where measured, each node's ``stability`` (per level, per node)."""
    depth = hier.depth
    n_rows = len(ids)
    nodes: list[Node] = []
    for level, info in enumerate(levels):
        sizes = np.bincount(row_groups[level], minlength=max(info) + 1)
        for g in sorted(info):
            meta = info[g]
            size = int(sizes[g])
            extra: dict[str, Any] = {"share": round(size / n_rows, 6)}
            if stability is not None:
                extra["stability"] = round(float(stability[level][g]), 3)
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
                    exemplar_ids=[str(ids[first_row[i]]) for i in meta["exemplars"]],
                    extra=extra,
                )
            )
    return nodes


def taxonomy_meta(hierarchy_label: str, naming: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"naming": "keyphrases", "hierarchy": hierarchy_label}
    named_meta = dict(naming.meta)
    note = named_meta.pop("hierarchy_note", None)
    meta.update(named_meta)
    if note:
        meta["hierarchy"] = f"{hierarchy_label}, {note}"
    return meta


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


def rows_of(ing: Ingested, vectors: np.ndarray, what: str) -> np.ndarray:
    """The rows of ``vectors`` (one per input row) that belong to the accepted rows."""
    if vectors.ndim != 2:
        raise UserError(f"{what}: expected a 2-D array (rows x dimensions), got shape {vectors.shape}")
    if vectors.shape[0] != ing.rows_read:
        raise UserError(f"{what}: {vectors.shape[0]} vectors for {ing.rows_read} input rows")
    rows = ing.frame["source_line"].to_numpy() - 1
    return vectors[rows]


def fit_counts(
    rows: int, unique_texts: int, is_outlier: np.ndarray, depth: int, levels: list[Any]
) -> dict[str, Any]:
    """The manifest's counts of a fit: rows, distinct texts, outliers and nodes per level."""
    return {
        "accepted": rows,
        "unique_texts": unique_texts,
        "duplicates_collapsed": rows - unique_texts,
        "clustered": int((~is_outlier).sum()),
        "outliers": int(is_outlier.sum()),
        "levels": depth,
        "nodes_per_level": [len(lvl) for lvl in levels],
        "leaves": len(levels[-1]),
        "intermediate": sum(len(lvl) for lvl in levels[1:-1]),
        "top": len(levels[0]),
    }
