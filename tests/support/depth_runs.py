"""Run directories of a chosen depth whose structure is fixed by construction, not computed.

Every command that reads a run must work on 2-, 3- and 5-level taxonomies. These runs give them
one each without depending on how UMAP and HDBSCAN fall on a machine: the rows are real BailBench
prompts (ingested by the real reader, embedded by the real MiniLM), and the tree over them is
given. Each top category is one BailBench category, each leaf one of its subcategories (6 of its
10 prompts; the other 4 are held out), and the levels between group the subcategories in fixed
blocks. One more leaf, "Unclustered (HDBSCAN noise)", under the first category, holds one prompt
of each category flagged ``is_outlier``, as the pipeline's noise leaf does.

Shapes (tops x children per node at each level below):

* depth 2: 3 x 4 (12 leaves)
* depth 3: 3 x 2 x 2 (12 leaves)
* depth 5: 3 x 2 x 2 x 2 x 2 (48 leaves)

``added=True`` builds the same run plus a fourth category (Disinformation), numbered first, so
its ids differ from the base run's: a diff from the base run finds exactly the added nodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
BAILBENCH = ROOT / "data" / "bailbench.csv"
FANOUTS = {2: (3, 4), 3: (3, 2, 2), 4: (3, 2, 2, 2), 5: (3, 2, 2, 2, 2)}
CATEGORIES = ("Fraud/Deception", "Physical Harm", "Harassment/Discrimination")
ADDED = "Disinformation"
IN_RUN = 6  # prompts per subcategory in the run; the rest of its 10 are held out
OUTLIER_NAME = "Unclustered (HDBSCAN noise)"


def _subcategories(data: pl.DataFrame, category: str, n: int) -> list[str]:
    subs = sorted(data.filter(pl.col("category") == category)["subcategory"].unique().to_list())
    assert len(subs) > n, f"{category} has {len(subs)} subcategories, {n + 1} needed"
    return subs[: n + 1]  # the last one gives the outlier rows


def _rows(data: pl.DataFrame, category: str, subcategory: str) -> pl.DataFrame:
    rows = data.filter((pl.col("category") == category) & (pl.col("subcategory") == subcategory))
    return rows.sort("id")


def layout(depth: int, added: bool = False) -> dict:
    """The fixed structure: per category its leaves' subcategories, plus the input rows."""
    data = pl.read_csv(BAILBENCH).with_row_index("id").with_columns(pl.col("id").cast(pl.String))
    fan = FANOUTS[depth]
    per_top = math.prod(fan[1:])
    cats = ([ADDED] if added else []) + list(CATEGORIES)
    leaves, outliers, heldout = [], [], []
    for c in cats:
        subs = _subcategories(data, c, per_top)
        for s in subs[:-1]:
            rows = _rows(data, c, s)
            leaves.append((c, s, rows.head(IN_RUN)))
            heldout.append(rows.slice(IN_RUN))
        if c != ADDED:  # the base run and the added one share the same noise leaf
            outliers.append(_rows(data, c, subs[-1]).head(1))
    return {
        "fanouts": fan,
        "categories": cats,
        "leaves": leaves,
        "outliers": pl.concat(outliers),
        "heldout": pl.concat(heldout),
    }


def build_run(out: Path, depth: int, *, added: bool = False, format_version: int = 2) -> Path:
    """Write the run directory of ``depth`` levels at ``out`` (once; reused when present)."""
    from bailclio import __version__, rundir
    from bailclio.config import Config
    from bailclio.embeddings.encoder import embed_texts
    from bailclio.ingest import read_input
    from bailclio.provenance import file_sha256
    from bailclio.taxonomy.model import Node, Taxonomy, node_id

    if rundir.is_run_dir(out):
        return out
    lay = layout(depth, added)
    fan = lay["fanouts"]
    out.mkdir(parents=True, exist_ok=True)
    inputs = pl.concat([rows for _, _, rows in lay["leaves"]] + [lay["outliers"]])
    csv = out.parent / f"{out.name}.csv"
    inputs.select("id", "content", "subcategory", "category").write_csv(csv)
    ing = read_input(csv)
    cfg = Config()
    vectors, stats = embed_texts(ing.frame["text"].to_list(), cfg.embedding, progress=False)

    # per leaf: its digits below the top (mixed radix over fan[1:]) give its ancestors
    index: list[dict[tuple, int]] = [{} for _ in range(depth)]
    names: list[dict[int, str]] = [{} for _ in range(depth)]
    parents: list[dict[int, int]] = [{} for _ in range(depth)]
    path_of_row: dict[str, list[int]] = {}
    noise_parent_path: list[int] | None = None
    per_top = math.prod(fan[1:])
    for j, (cat, sub, rows) in enumerate(lay["leaves"]):
        top, within = divmod(j, per_top)
        digits, rest = [], within
        for f in reversed(fan[1:]):
            rest, d = divmod(rest, f)
            digits.append(d)
        digits = digits[::-1]
        keys = [(top, *digits[:lv]) for lv in range(depth)]
        idx = [index[lv].setdefault(k, len(index[lv])) for lv, k in enumerate(keys)]
        for lv in range(depth):
            if lv == 0:
                names[0][idx[0]] = cat
            elif lv == depth - 1:
                names[lv][idx[lv]] = sub
            else:
                names[lv].setdefault(idx[lv], f"{cat}: {sub} and {math.prod(fan[lv + 1 :]) - 1} more")
            if lv:
                parents[lv][idx[lv]] = idx[lv - 1]
        for rid in rows["id"].to_list():
            path_of_row[rid] = idx
        if cat == CATEGORIES[0] and noise_parent_path is None:
            noise_parent_path = idx[:-1]
    # the noise leaf hangs under the first category's first node of the level above the leaves
    noise = len(index[-1])
    names[-1][noise] = OUTLIER_NAME
    parents[-1][noise] = noise_parent_path[-1]
    for rid in lay["outliers"]["id"].to_list():
        path_of_row[rid] = [*noise_parent_path, noise]

    ids = ing.frame["conversation_id"].to_list()
    paths = [[node_id(lv, i, depth) for lv, i in enumerate(path_of_row[r])] for r in ids]
    is_outlier = [path_of_row[r][-1] == noise for r in ids]
    sizes: list[dict[str, int]] = [{} for _ in range(depth)]
    for p in paths:
        for lv, nid in enumerate(p):
            sizes[lv][nid] = sizes[lv].get(nid, 0) + 1
    nodes = []
    n = len(ids)
    for lv in range(depth):
        for i in sorted(names[lv]):
            nid = node_id(lv, i, depth)
            members = [r for r, p in zip(ids, paths, strict=True) if p[lv] == nid]
            extra: dict = {"share": round(sizes[lv][nid] / n, 6)}
            if lv == depth - 1 and i == noise:
                extra["is_outlier_node"] = True
            nodes.append(
                Node(
                    id=nid,
                    parent_id=None if lv == 0 else node_id(lv - 1, parents[lv][i], depth),
                    level=lv,
                    name=names[lv][i],
                    description=f"{sizes[lv][nid]} prompts about {names[lv][i].lower()}.",
                    size=sizes[lv][nid],
                    keywords=names[lv][i].lower().split()[:3],
                    exemplar_ids=members[:3],
                    extra=extra,
                )
            )
    tax = Taxonomy(nodes, {"naming": "fixed", "hierarchy": "fixed by construction"})
    # a deterministic map: each leaf's rows on a small arc around its top category's spot
    leaf_index = np.array([path_of_row[r][-1] for r in ids], dtype=np.float32)
    top_index = np.array([path_of_row[r][0] for r in ids], dtype=np.float32)
    angle = 2 * np.pi * top_index / len(lay["categories"])
    x = 10 * np.cos(angle) + 0.3 * (leaf_index % 7)
    y = 10 * np.sin(angle) + 0.3 * (np.arange(n) % 5)
    columns = {
        "conversation_id": ids,
        "leaf_id": [p[-1] for p in paths],
        "top_id": [p[0] for p in paths],
        "path": paths,
        "is_outlier": is_outlier,
        "outlier_score": np.where(is_outlier, 0.9, 0.1).astype(np.float32),
        "x": x.astype(np.float32),
        "y": y.astype(np.float32),
    }
    if format_version == 1:
        assert depth == 3, "format 1 runs had three levels"
        columns["mid_id"] = [p[1] for p in paths]
    rundir.write_tables(
        out,
        conversations=ing.frame,
        assignments=pl.DataFrame(columns),
        taxonomy=tax,
        embeddings=vectors,
        space=vectors[:, :10],
    )
    if format_version != 2:
        raw = json.loads((out / rundir.TAXONOMY).read_text())
        (out / rundir.TAXONOMY).write_text(json.dumps({**raw, "format_version": format_version}))
    level_sizes = [len(names[lv]) for lv in range(depth)]
    counts = {
        "rows_read": ing.rows_read,
        "rejected": len(ing.rejects),
        "accepted": n,
        "unique_texts": n,
        "duplicates_collapsed": 0,
        "clustered": n - sum(is_outlier),
        "outliers": sum(is_outlier),
        "levels": depth,
        "nodes_per_level": level_sizes,
        "leaves": level_sizes[-1],
        "intermediate": sum(level_sizes[1:-1]),
        "top": level_sizes[0],
    }
    if format_version == 1:
        counts = {k: v for k, v in counts.items() if k not in ("levels", "nodes_per_level")}
    manifest = {
        "format_version": format_version,
        "bailclio_version": __version__,
        "created_at": "2026-01-01T00:00:00+00:00",
        "seed": cfg.seed,
        "input": {
            "path": str(csv.resolve()),
            "sha256": file_sha256(csv),
            "bytes": csv.stat().st_size,
            "shape": ing.shape,
            "text_source": ing.text_source,
        },
        "config": cfg.model_dump(mode="json"),
        "resolved": {"hierarchy": {"depth": depth, "sizes": level_sizes, "fixed": True}},
        "embedding": stats,
        "counts": counts,
        "timings_s": {"total": 0.0},
        "versions": {},
        "platform": {},
    }
    rundir.write_manifest(out, manifest)
    return out


def heldout_csv(path: Path, depth: int) -> Path:
    """The held-out prompts of the run's leaves (4 per subcategory) as a BailBench-shaped CSV."""
    if not path.exists():
        layout(depth)["heldout"].select("id", "content", "subcategory", "category").write_csv(path)
    return path


class FixedRuns:
    """The session's fixed-structure runs under ``root``, built on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, depth: int, *, added: bool = False, format_version: int = 2) -> Path:
        name = (
            f"depth{depth}"
            + ("-added" if added else "")
            + ("" if format_version == 2 else f"-v{format_version}")
        )
        return build_run(self.root / name, depth, added=added, format_version=format_version)

    def heldout(self, depth: int) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return heldout_csv(self.root / f"heldout-depth{depth}.csv", depth)
