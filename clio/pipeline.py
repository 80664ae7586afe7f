"""``run(input, out, config)``: input file -> run directory. Composes the stages in order.

Stages: ingest -> deduplicate -> embed (cached) -> reduce (UMAP) -> cluster (HDBSCAN) ->
hierarchy (Ward on leaf centroids) -> names (c-TF-IDF keyphrases + exemplars) -> write.
Exact duplicate texts are embedded and clustered once; every input row still gets its assignment.
With ``llm.backend`` set (:mod:`bailclio.llm_stage`), facet summaries are written before embedding and
clustered instead of the texts, and LLM names replace the keyphrase names after the hierarchy;
without it, nothing of this runs and the outputs are those of the keyphrase pipeline.
The manifest (written last, so a half-written directory is never mistaken for a run) records the
config, package versions, seed, input hash, counts and per-stage timings.

Example::

    >>> from bailclio.config import Config
    >>> result = run("data/bailbench.csv", "runs/bb", Config())   # doctest: +SKIP
    >>> result.manifest["counts"]["accepted"]
    1630
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import __version__, rundir
from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.ingest import Ingested, read_input
from bailclio.provenance import VERSIONED_PACKAGES as VERSIONED_PACKAGES  # re-exported
from bailclio.provenance import file_sha256, package_versions
from bailclio.taxonomy.model import FORMAT_VERSION, Node, Taxonomy, node_id

OUTLIER_NAME = "Unclustered (HDBSCAN noise)"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_numba_cache() -> None:
    """Keep numba's compiled functions on disk so only the first run ever pays for compiling."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        from bailclio.embeddings.encoder import default_cache_dir

        path = default_cache_dir() / "numba"
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)


@dataclass
class RunResult:
    path: Path
    manifest: dict[str, Any]
    taxonomy: Taxonomy
    assignments: pl.DataFrame
    rejects: list[dict[str, Any]] = field(default_factory=list)


class _Timer:
    def __init__(self, verbose: bool = True) -> None:
        self.timings: dict[str, float] = {}
        self.verbose = verbose

    def stage(self, name: str, fn: Callable[[], Any], announce: bool = True) -> Any:
        t0 = time.perf_counter()
        if self.verbose and announce:
            _log(f"[bailclio] {name} ...")
        result = fn()
        self.timings[name] = round(time.perf_counter() - t0, 3)
        return result


def prepare_out_dir(out: str | Path, force: bool) -> Path:
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UserError(f"{p}: exists and is not a directory")
    if p.exists() and any(p.iterdir()):
        if not force:
            raise UserError(f"{p}: output directory is not empty (use --force to replace it)")
        if not rundir.is_run_dir(p) and not (p / rundir.REJECTS).exists():
            raise UserError(f"{p}: not empty and not a run directory; refusing to replace it")
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


def name_levels(
    texts: list[str],
    space: np.ndarray,
    groups_per_level: list[np.ndarray],
    is_outlier: np.ndarray,
    cfg: Config,
) -> list[dict[int, dict[str, Any]]]:
    """Keyphrase names, descriptions and exemplar indices for every node of every level."""
    from bailclio.naming import ctfidf_keywords, describe, exemplars, name_from_keywords

    out = []
    for groups in groups_per_level:
        kws = ctfidf_keywords(texts, groups, cfg.naming.n_keywords, cfg.naming.ngram_max)
        level: dict[int, dict[str, Any]] = {}
        taken: set[str] = set()
        for g in sorted(kws):
            members = np.flatnonzero(groups == g)
            ex = exemplars(space, members, cfg.naming.n_exemplars, prefer=~is_outlier)
            level[g] = {
                "name": name_from_keywords(kws[g], taken),
                "keywords": kws[g],
                "exemplars": ex,
                "describe": (lambda size, k=kws[g], e=ex: describe(size, k, [texts[i] for i in e])),
            }
        out.append(level)
    return out


def run(
    input_path: str | Path,
    out: str | Path,
    cfg: Config,
    *,
    force: bool = False,
    progress: bool = True,
) -> RunResult:
    ensure_numba_cache()
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    timer = _Timer(verbose=progress)
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
    out_dir = prepare_out_dir(out, force)
    if ing.rejects:
        ing.write_rejects(out_dir / rundir.REJECTS)
    frame = ing.frame
    row_texts = frame["text"].to_list()

    # With an LLM, rows are clustered on a facet summary (facets.py); otherwise on their text.
    llm = None
    cluster_texts = row_texts
    if cfg.llm.backend != "none":
        from bailclio.llm_stage import LLMStage

        llm = LLMStage(cfg, progress=progress)
        frame, cluster_texts = timer.stage("facets", lambda: llm.facets(frame))

    # Exact duplicates are clustered once.
    unique_index: dict[str, int] = {}
    row_to_unique = np.empty(len(cluster_texts), dtype=np.int64)
    for i, t in enumerate(cluster_texts):
        row_to_unique[i] = unique_index.setdefault(t, len(unique_index))
    texts = list(unique_index)

    from bailclio.cluster import cluster_points
    from bailclio.embeddings.encoder import embed_texts
    from bailclio.hierarchy import build_hierarchy
    from bailclio.reduce import reduce_vectors

    vectors, embed_stats = timer.stage("embed", lambda: embed_texts(texts, cfg.embedding, progress=progress))
    space, xy, reduce_info = timer.stage("reduce", lambda: reduce_vectors(vectors, cfg.reduce, cfg.seed))
    clustering = timer.stage("cluster", lambda: cluster_points(space, cfg.cluster))
    leaf_of_unique = clustering.labels.copy()
    if (leaf_of_unique < 0).any():  # outliers kept apart: one extra leaf holds them
        leaf_of_unique[leaf_of_unique < 0] = leaf_of_unique.max() + 1
    hier = timer.stage("hierarchy", lambda: build_hierarchy(space, leaf_of_unique, cfg.hierarchy))
    depth = hier.depth
    groups_of_unique = hier.groups(leaf_of_unique)  # top first, leaves last
    levels = timer.stage(
        "names",
        lambda: name_levels(texts, space, groups_of_unique, clustering.is_outlier, cfg),
    )
    outlier_leaf = int(clustering.labels.max()) + 1 if (clustering.labels < 0).any() else None
    llm_names = None
    if llm is not None:
        llm_names = timer.stage(
            "llm names",
            lambda: llm.names(
                summaries=texts,
                space=space,
                leaf_of_unique=leaf_of_unique,
                parents=hier.parents,
                levels=levels,
                fixed_leaves={} if outlier_leaf is None else {outlier_leaf: OUTLIER_NAME},
            ),
        )
        llm.close()

    # Per-row arrays.
    ids = frame["conversation_id"].to_list()
    first_row_of_unique = np.full(len(texts), -1, dtype=np.int64)
    for r in range(len(ids) - 1, -1, -1):
        first_row_of_unique[row_to_unique[r]] = r
    row_groups = [g[row_to_unique] for g in groups_of_unique]
    outlier_r = clustering.is_outlier[row_to_unique]
    n_rows = len(ids)

    nodes: list[Node] = []
    for level, info in enumerate(levels):
        sizes = np.bincount(row_groups[level], minlength=max(info) + 1)
        for g in sorted(info):
            meta = info[g]
            size = int(sizes[g])
            name = meta["name"]
            extra: dict[str, Any] = {"share": round(size / n_rows, 6)}
            if level == depth - 1 and outlier_leaf is not None and g == outlier_leaf:
                name, extra["is_outlier_node"] = OUTLIER_NAME, True
            description = None
            if llm_names is not None:
                named = llm_names.levels[level][g]
                name, description = named.name, named.description
                extra["name_source"] = named.source
                if named.error:
                    extra["name_error"] = named.error
            parent = None if level == 0 else node_id(level - 1, int(hier.parents[level - 1][g]), depth)
            nodes.append(
                Node(
                    id=node_id(level, g, depth),
                    parent_id=parent,
                    level=level,
                    name=name,
                    description=description or meta["describe"](size),
                    size=size,
                    keywords=meta["keywords"],
                    exemplar_ids=[str(ids[first_row_of_unique[i]]) for i in meta["exemplars"]],
                    extra=extra,
                )
            )
    tax_meta: dict[str, Any] = {"naming": "keyphrases", "hierarchy": "ward-on-leaf-centroids"}
    if llm is not None and llm_names is not None:
        n_llm = sum(n.extra.get("name_source") == "llm" for n in nodes)
        tax_meta = {
            "naming": "llm" if n_llm else "keyphrases",
            "hierarchy": "ward-on-leaf-centroids, llm-named",
            "facet": llm.facet.name if llm.facet else None,
            "llm_model": cfg.llm.model,
            "llm_named_nodes": n_llm,
            "keyphrase_named_nodes": sum(n.extra.get("name_source") == "keyphrases" for n in nodes),
        }
    tax = Taxonomy(nodes, tax_meta)

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
    assignments = pl.DataFrame(columns)

    def write() -> None:
        frame.write_parquet(out_dir / rundir.CONVERSATIONS)
        assignments.write_parquet(out_dir / rundir.ASSIGNMENTS)
        tax.save(out_dir / rundir.TAXONOMY)
        np.save(out_dir / rundir.EMBEDDINGS, vectors[row_to_unique])
        np.save(out_dir / rundir.SPACE, space[row_to_unique])

    timer.stage("write", write)
    counts = {
        "rows_read": ing.rows_read,
        "rejected": len(ing.rejects),
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
    if llm is not None:
        counts["facet_fallback_rows"] = llm.facet_fallback_rows
    manifest = {
        "format_version": FORMAT_VERSION,
        "bailclio_version": __version__,
        "created_at": started.isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "input": {
            "path": str(input_path.resolve()),
            "sha256": file_sha256(input_path),
            "bytes": input_path.stat().st_size,
            "shape": ing.shape,
            "text_source": ing.text_source,
        },
        "config": cfg.model_dump(mode="json"),
        "resolved": {
            "reduce": reduce_info,
            "cluster": clustering.params,
            "hierarchy": {"depth": depth, "sizes": hier.sizes, **hier.info},
        },
        "embedding": embed_stats,
        **({"llm": llm.manifest()} if llm is not None else {}),
        "counts": counts,
        "timings_s": {**timer.timings, "total": round(time.perf_counter() - t_all, 3)},
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system()},
    }
    rundir.write_json(out_dir / rundir.MANIFEST, manifest)
    if llm is not None and llm.budget_message():
        _log(f"[bailclio] {llm.budget_message()}")
    return RunResult(out_dir, manifest, tax, assignments, ing.rejects)
