"""Tables and queries behind the explorer page, computed once per loaded run (no Streamlit here).

:func:`prepare` turns a :class:`bailclio.rundir.Run` into an :class:`Explorer`: one frame with every
conversation, its assignment and the id and name of its node at each level; a node table with
sizes and shares; and the lists the page's filters offer. Everything else (search, filters, member
lists, breakdowns, refusal figures, map points, downloads) is a function of an
``Explorer``; the run and group comparisons are in ``explorer.compare`` and ``explorer.groups``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import rundir
from bailclio.rundir import Run
from bailclio.taxonomy.export import EXTENSIONS, export_frame, write_frame
from bailclio.taxonomy.model import Taxonomy, level_label
from bailclio.taxonomy.site_data import interval

BAIL_COLUMNS = ("model", "bail_method", "bail_turn", "bail_probability", "journal")
FACET_PREFIX = "facet_"
INTERNAL = ("conversation_id", "text", "conversation", "source_line")
LABEL_MAX_VALUES = 200  # a preserved string column with at most this many values is a label column


def run_signature(path: str | Path) -> tuple[Any, ...]:
    """Changes whenever a file the explorer reads changes (used as the cache key with the path)."""
    p = Path(path)
    sig: list[Any] = [str(p.resolve())]
    for name in (*rundir.REQUIRED, rundir.CURATION, rundir.EMBEDDINGS):
        f = p / name
        if f.exists():
            st = f.stat()
            sig.append((name, st.st_mtime_ns, st.st_size))
    return tuple(sig)


def describe_run(path: str | Path) -> dict[str, Any]:
    """One line of the run picker: date, input, rows, embedding/LLM model, facets."""
    p = Path(path)
    info: dict[str, Any] = {"path": str(p), "name": p.name}
    try:
        m = json.loads((p / rundir.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        info["error"] = f"unreadable manifest: {exc}".splitlines()[0]
        return info
    if not isinstance(m, dict):
        info["error"] = f"unreadable manifest: a JSON {type(m).__name__}, not an object"
        return info
    cfg = m.get("config", {}) if isinstance(m.get("config"), dict) else {}
    llm = cfg.get("llm", {}) or {}
    try:
        schema = pl.read_parquet_schema(p / rundir.CONVERSATIONS)
        facets = [c[len(FACET_PREFIX) :] for c in schema if c.startswith(FACET_PREFIX)]
    except Exception:  # noqa: BLE001 - the picker still lists a run whose table is damaged
        facets = []
    info.update(
        created=str(m.get("created_at", "")),
        input=Path(str((m.get("input") or {}).get("path", "?"))).name,
        rows=(m.get("counts") or {}).get("accepted"),
        embedding=(cfg.get("embedding") or {}).get("model"),
        llm=llm.get("model") if llm.get("backend") not in (None, "none") else None,
        facets=facets,
        curated=(p / rundir.CURATION).exists(),
    )
    return info


def run_label(info: dict[str, Any]) -> str:
    if "error" in info:
        return f"{info['name']} ({info['error']})"
    created = info.get("created", "")[:16].replace("T", " ")
    parts = [info["name"], created, info.get("input") or "?", f"{info.get('rows') or 0:,} rows"]
    parts.append(info.get("llm") or info.get("embedding") or "")
    if info.get("facets"):
        parts.append("facets: " + ", ".join(info["facets"]))
    return " · ".join(p for p in parts if p)


def snippet(text: str | None, n: int = 140) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


@dataclass
class Explorer:
    run: Run
    frame: pl.DataFrame  # one row per conversation: inputs + assignment + lvl{i}, lvl{i}_name, _row
    nodes: pl.DataFrame  # id, parent_id, level, name, description, size, share, share_of_parent
    depth: int
    total: int
    level_names: list[str]
    models: list[str]
    bail_methods: list[str]
    label_columns: dict[str, list[str]]
    facet_columns: list[str]
    meta_columns: list[str]
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def taxonomy(self) -> Taxonomy:
        return self.run.taxonomy

    def level_col(self, level: int) -> str:
        return f"lvl{level}"

    def node(self, node_id: str):
        return self.taxonomy.by_id.get(node_id)

    @property
    def has_refusal(self) -> bool:
        """The rows carry ``refused`` (True / False / null, from ``bailclio detect``)."""
        return "refused" in self.frame.columns and self.frame.schema["refused"] == pl.Boolean


def no_refusal(ex: Explorer, node_id: str) -> dict[str, Any] | None:
    """The share of the node's rows that were not refused, ``{"n", "count", "share", "ci95"}`` over
    the rows with a verdict; None when the run has no ``refused`` column."""
    if not ex.has_refusal:
        return None
    verdicts = members(ex, node_id)["refused"].drop_nulls()
    return interval(int((~verdicts).sum()), verdicts.len())


def tree_order(tax: Taxonomy) -> list[str]:
    """Every node id, depth first: each top category (largest first) followed by its subtree."""
    out: list[str] = []

    def visit(parent: str | None) -> None:
        for n in sorted(tax.children(parent), key=lambda x: (-x.size, x.id)):
            out.append(n.id)
            visit(n.id)

    visit(None)
    return out


def level_names(depth: int) -> list[str]:
    """Each level's name for people, top first (:func:`bailclio.taxonomy.model.level_label`)."""
    return [level_label(lv, depth) for lv in range(depth)]


def prepare(run: Run) -> Explorer:
    tax = run.taxonomy
    conv, assign = run.conversations, run.assignments
    depth = max(tax.depth, 1)
    if conv.height == assign.height and conv["conversation_id"].equals(assign["conversation_id"]):
        frame = pl.concat([conv, assign.drop("conversation_id")], how="horizontal")
    else:
        frame = conv.join(assign, on="conversation_id", how="inner", maintain_order="left")
    names = {n.id: n.name for n in tax.nodes}
    lvl_cols = []
    for i in range(depth):
        col = pl.col("path").list.get(i, null_on_oob=True)
        lvl_cols += [col.alias(f"lvl{i}"), col.replace_strict(names, default=None).alias(f"lvl{i}_name")]
    frame = frame.with_columns(
        *lvl_cols,
        pl.col("text").str.to_lowercase().alias("_lc"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
    )
    total = frame.height
    rows = []
    for n in tax.nodes:
        parent = tax.by_id.get(n.parent_id) if n.parent_id else None
        rows.append(
            {
                "id": n.id,
                "parent_id": n.parent_id,
                "level": n.level,
                "name": n.name,
                "description": n.description,
                "keywords": ", ".join(n.keywords),
                "size": n.size,
                "share": n.size / total if total else 0.0,
                "share_of_parent": n.size / parent.size if parent and parent.size else 1.0,
            }
        )
    nodes = pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "parent_id": pl.String,
            "level": pl.Int64,
            "name": pl.String,
            "description": pl.String,
            "keywords": pl.String,
            "size": pl.Int64,
            "share": pl.Float64,
            "share_of_parent": pl.Float64,
        },
    )

    def values(col: str) -> list[str]:
        if col not in conv.columns:
            return []
        return sorted(str(v) for v in conv[col].drop_nulls().unique().to_list())

    known = set(INTERNAL) | set(BAIL_COLUMNS)
    facet_columns = [c for c in conv.columns if c.startswith(FACET_PREFIX)]
    label_columns: dict[str, list[str]] = {}
    for c in conv.columns:
        if c in known or c in facet_columns or conv[c].dtype != pl.String:
            continue
        n_unique = conv[c].n_unique()
        if 1 < n_unique <= LABEL_MAX_VALUES and n_unique < max(total, 2):
            label_columns[c] = values(c)
    meta_columns = [c for c in conv.columns if c not in ("text", "conversation") and c not in facet_columns]
    return Explorer(
        run=run,
        frame=frame,
        nodes=nodes,
        depth=depth,
        total=total,
        level_names=level_names(depth),
        models=values("model"),
        bail_methods=values("bail_method"),
        label_columns=label_columns,
        facet_columns=facet_columns,
        meta_columns=meta_columns,
    )


# --------------------------------------------------------------------------- filters and search


@dataclass
class Filters:
    models: list[str] = field(default_factory=list)
    bail_methods: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    outliers: str = "include"  # include | exclude | only
    label_column: str | None = None
    label_values: list[str] = field(default_factory=list)
    refused: str = "any"  # any | refused | not refused (rows with no refusal verdict match neither)

    def expr(self, ex: Explorer) -> pl.Expr:
        e = pl.lit(True)
        if self.models and "model" in ex.frame.columns:
            e &= pl.col("model").cast(pl.String).is_in(self.models)
        if self.bail_methods and "bail_method" in ex.frame.columns:
            e &= pl.col("bail_method").cast(pl.String).is_in(self.bail_methods)
        if self.tops:
            e &= pl.col("lvl0").is_in(self.tops)
        if self.outliers == "exclude":
            e &= ~pl.col("is_outlier")
        elif self.outliers == "only":
            e &= pl.col("is_outlier")
        if self.label_column and self.label_values and self.label_column in ex.frame.columns:
            e &= pl.col(self.label_column).cast(pl.String).is_in(self.label_values)
        if self.refused != "any" and ex.has_refusal:
            e &= (pl.col("refused") == (self.refused == "refused")).fill_null(False)
        return e

    @property
    def active(self) -> bool:
        return bool(
            self.models
            or self.bail_methods
            or self.tops
            or self.outliers != "include"
            or (self.label_column and self.label_values)
            or self.refused != "any"
        )


def apply_filters(ex: Explorer, filters: Filters | None, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    frame = ex.frame if frame is None else frame
    if filters is None or not filters.active:
        return frame
    return frame.filter(filters.expr(ex))


def search_conversations(ex: Explorer, query: str, filters: Filters | None = None) -> pl.DataFrame:
    """Rows whose text, label columns or facets contain ``query``, or whose conversation id is it
    (case-insensitive), filters applied."""
    frame = apply_filters(ex, filters)
    q = query.strip().lower()
    if q:
        hit = pl.col("_lc").str.contains(q, literal=True) | (
            pl.col("conversation_id").str.to_lowercase() == q
        )
        for c in (*ex.label_columns, *ex.facet_columns):
            hit |= pl.col(c).cast(pl.String).str.to_lowercase().str.contains(q, literal=True).fill_null(False)
        frame = frame.filter(hit)
    return frame


def search_nodes(ex: Explorer, query: str) -> pl.DataFrame:
    q = query.strip().lower()
    if not q:
        return ex.nodes.clear()
    hit = (
        pl.col("name").str.to_lowercase().str.contains(q, literal=True)
        | pl.col("description").str.to_lowercase().str.contains(q, literal=True)
        | pl.col("keywords").str.to_lowercase().str.contains(q, literal=True)
        | (pl.col("id").str.to_lowercase() == q)
    )
    return ex.nodes.filter(hit).sort(["level", "size"], descending=[False, True])


def members(ex: Explorer, node_id: str, filters: Filters | None = None) -> pl.DataFrame:
    node = ex.node(node_id)
    if node is None:
        return ex.frame.clear()
    return apply_filters(ex, filters, ex.frame.filter(pl.col(f"lvl{node.level}") == node_id))


def page(frame: pl.DataFrame, page_no: int, page_size: int) -> pl.DataFrame:
    return frame.slice(max(page_no - 1, 0) * page_size, page_size)


def n_pages(n: int, page_size: int) -> int:
    return max(1, -(-n // page_size))


def breakdown(ex: Explorer, node_id: str, column: str) -> pl.DataFrame:
    """Counts of ``column``'s values in the node and their share within the node and overall."""
    if column not in ex.frame.columns:
        return pl.DataFrame()
    inside = members(ex, node_id).group_by(pl.col(column).cast(pl.String)).len("in_node")
    overall = ex.frame.group_by(pl.col(column).cast(pl.String)).len("overall")
    out = overall.join(inside, on=column, how="left").with_columns(pl.col("in_node").fill_null(0))
    n_in = max(int(out["in_node"].sum()), 1)
    return out.with_columns(
        (pl.col("in_node") / n_in).alias("share_in_node"),
        (pl.col("overall") / max(ex.total, 1)).alias("share_overall"),
        (pl.col("in_node") / pl.col("overall")).alias(f"share_of_{column}_in_node"),
    ).sort("in_node", descending=True)


def conversation(ex: Explorer, conversation_id: str) -> dict[str, Any] | None:
    rows = ex.frame.filter(pl.col("conversation_id") == conversation_id)
    return rows.row(0, named=True) if rows.height else None


def details_table(ex: Explorer, row: dict[str, Any]) -> pl.DataFrame:
    """A conversation's input columns as readable ``field``/``value`` rows (no map coordinates,
    no JSON): lists and records are written as ``key: value`` text."""

    def readable(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, dict):
            return "; ".join(f"{k}: {readable(x)}" for k, x in v.items())
        if isinstance(v, list | tuple):
            return ", ".join(readable(x) for x in v)
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    fields = [c for c in ex.meta_columns if c not in ("journal",)]
    values = [readable(row.get(c)) for c in fields]
    if row.get("outlier_score") is not None:
        fields.append("outlier score")
        values.append(readable(row.get("outlier_score")))
    return pl.DataFrame({"field": fields, "value": values}, schema={"field": pl.String, "value": pl.String})


# --------------------------------------------------------------------------- map


def map_points(
    ex: Explorer,
    level: int,
    max_points: int = 20_000,
    filters: Filters | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, int]:
    """Points to draw (deterministically sampled down to ``max_points``) and how many there were."""
    frame = apply_filters(ex, filters)
    n = frame.height
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        frame = frame[idx]
    cols = ["_row", "conversation_id", "x", "y", "is_outlier", f"lvl{level}", f"lvl{level}_name"]
    frame = frame.select(*cols, pl.col("text").str.slice(0, 200).alias("snippet"))
    return frame, n


# --------------------------------------------------------------------------- downloads


def taxonomy_json(run: Run) -> bytes:
    return json.dumps(run.taxonomy.to_dict(), indent=1, ensure_ascii=False).encode("utf-8")


def labels_frame(run: Run) -> pl.DataFrame:
    """conversation_id, each level's id and name, is_outlier, then every input column: the table
    ``bailclio export --format parquet`` writes (:func:`bailclio.taxonomy.export.export_frame`)."""
    return export_frame(run, "parquet")[0]


def labels_bytes(run: Run, fmt: str) -> bytes:
    """The file ``bailclio export RUNDIR --format fmt`` writes, as bytes (the same code writes it)."""
    frame, _ = export_frame(run, fmt)
    with tempfile.TemporaryDirectory(prefix="bailclio-download-") as tmp:
        path = Path(tmp) / f"labels{EXTENSIONS[fmt]}"
        write_frame(frame, fmt, path)
        return path.read_bytes()


def labels_csv(run: Run) -> bytes:
    return labels_bytes(run, "csv")


def labels_parquet(run: Run) -> bytes:
    return labels_bytes(run, "parquet")
