"""Export a run's taxonomy labels per conversation: BailBench CSV, or a full table (CSV, JSONL,
Parquet).

* ``bailbench``: exactly BailBench's columns ``content,subcategory,category`` (UTF-8, RFC 4180
  quoting). ``content`` is the conversation's last user turn (for a text-shaped run, the original
  text column's value), ``category`` the top-level node's name and ``subcategory`` the leaf's (or
  the chosen level's) name, so the export can be read wherever BailBench is.
* ``csv`` / ``jsonl`` / ``parquet``: one row per conversation with ``conversation_id``, each
  level's node id and name, top first (``top_id``, ``top_name``, then ``level_<d>_id``,
  ``level_<d>_name`` for each level between, then ``leaf_id``, ``leaf_name``: a 5-level run has
  ``level_1`` to ``level_3``), ``is_outlier`` and every preserved input column (conversations as
  JSON text in CSV). With ``level`` the table stops at that level. A run that measured node
  stability adds ``<stem>_stability`` per level; ``compare_by`` adds each row's node's share of
  every group of that column (``share_<group>``, ``_lo``, ``_hi``), ``compare_q`` and
  ``compare_significant`` (``bailclio compare``'s figures, at the deepest exported level). An
  input column whose name collides with these is kept as ``input_<name>``.

``min_cluster_size`` leaves out, for privacy, every node with fewer than K conversations (as Clio
does before anything leaves the analysis) together with its rows; the export reports which.

Example::

    >>> run = load_run("runs/demo")                                        # doctest: +SKIP
    >>> frame, dropped = export_frame(run, "bailbench", min_cluster_size=10)  # doctest: +SKIP
    >>> frame.columns                                                      # doctest: +SKIP
    ['content', 'subcategory', 'category']
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.taxonomy.model import level_stems

if TYPE_CHECKING:
    from bailclio.rundir import Run

FORMATS = ("bailbench", "csv", "jsonl", "parquet")
EXTENSIONS = {"bailbench": ".csv", "csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
BAILBENCH_COLUMNS = ("content", "subcategory", "category")


@dataclass
class Dropped:
    """Nodes left out by the minimum cluster size, and how many rows went with them."""

    min_cluster_size: int | None = None
    nodes: list[tuple[str, str, int]] = field(default_factory=list)  # (id, name, size)
    rows: int = 0

    def summary(self) -> str:
        if not self.nodes:
            return f"no node is smaller than {self.min_cluster_size}" if self.min_cluster_size else ""
        names = ", ".join(f"{i} ({n})" for i, _, n in self.nodes[:10])
        more = f" and {len(self.nodes) - 10} more" if len(self.nodes) > 10 else ""
        return (
            f"left out {len(self.nodes)} nodes smaller than {self.min_cluster_size} conversations "
            f"({self.rows} rows): {names}{more}"
        )


def last_user_turn(turns: list[dict[str, Any]] | None) -> str:
    """The content of the last user turn with visible text (else the last turn with any, so an
    exported row is never empty where the conversation had text)."""
    if not turns:
        return ""
    for turn in reversed(turns):
        if (turn.get("role") or "").lower() == "user" and str(turn.get("content") or "").strip():
            return str(turn.get("content"))
    for turn in reversed(turns):
        if str(turn.get("content") or "").strip():
            return str(turn.get("content"))
    return ""


def aligned_conversations(run: Run) -> pl.DataFrame:
    """The conversations table in the order of the assignments table."""
    conv = run.conversations
    ids = run.assignments["conversation_id"]
    if conv.height == ids.len() and conv["conversation_id"].equals(ids):
        return conv
    return pl.DataFrame({"conversation_id": ids}).join(conv, on="conversation_id", how="left")


def content_column(run: Run, conv: pl.DataFrame) -> list[str]:
    """What BailBench calls ``content``: the last user turn, or the original text value."""
    shape = run.manifest.get("input", {}).get("shape", "text")
    if shape == "conversation" and "conversation" in conv.columns:
        return [last_user_turn(t) for t in conv["conversation"].to_list()]
    source = run.manifest.get("input", {}).get("text_source") or "text"
    column = source if source in conv.columns else "text"
    return [("" if v is None else str(v)) for v in conv[column].to_list()]


def _levels(run: Run, level: int | None) -> list[int]:
    depth = run.taxonomy.depth
    if level is None:
        return list(range(depth))
    if not 0 <= level < depth:
        raise UserError(f"--level {level} does not exist (the taxonomy has levels 0..{depth - 1})")
    return list(range(level + 1))


def _small_nodes(run: Run, ids_per_level: dict[int, list[str | None]], k: int | None) -> Dropped:
    dropped = Dropped(min_cluster_size=k)
    if not k:
        return dropped
    for level in sorted(ids_per_level):
        counts = Counter(ids_per_level[level])
        for node_id, size in sorted(counts.items(), key=lambda kv: (kv[1], str(kv[0]))):
            if node_id is not None and size < k:
                dropped.nodes.append((node_id, run.taxonomy.by_id[node_id].name, size))
    return dropped


def export_frame(
    run: Run,
    fmt: str,
    *,
    level: int | None = None,
    min_cluster_size: int | None = None,
    compare_by: str | None = None,
) -> tuple[pl.DataFrame, Dropped]:
    """The export table for ``fmt`` and the nodes the minimum cluster size left out;
    ``compare_by`` adds the deepest exported level's comparison across that column's groups
    (:func:`group_share_columns`; not for ``bailbench``, whose columns are fixed)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (use one of {', '.join(FORMATS)})")
    if compare_by is not None and fmt == "bailbench":
        raise UserError(
            "--compare-by adds columns, which the bailbench format does not have: use csv, jsonl or parquet"
        )
    if min_cluster_size is not None and min_cluster_size < 1:
        raise UserError("--min-cluster-size must be at least 1")
    levels = _levels(run, level)
    ids = {lv: run.level_ids(lv) for lv in levels}
    dropped = _small_nodes(run, ids, min_cluster_size)
    small = {node_id for node_id, _, _ in dropped.nodes}
    n = run.assignments.height
    keep = [all(ids[lv][i] not in small for lv in levels) for i in range(n)]
    dropped.rows = n - sum(keep)
    conv = aligned_conversations(run)
    names = {nid: node.name for nid, node in run.taxonomy.by_id.items()}
    if fmt == "bailbench":
        frame = pl.DataFrame(
            {
                "content": content_column(run, conv),
                "subcategory": [names[x] for x in ids[levels[-1]]],
                "category": [names[x] for x in ids[0]],
            },
            schema={c: pl.String for c in BAILBENCH_COLUMNS},
        )
        return frame.filter(pl.Series(keep)), dropped

    stems = level_stems(run.taxonomy.depth)
    cols: dict[str, Any] = {"conversation_id": run.assignments["conversation_id"]}
    for lv in levels:
        cols[f"{stems[lv]}_id"] = pl.Series(ids[lv], dtype=pl.String)
        cols[f"{stems[lv]}_name"] = pl.Series([names[x] for x in ids[lv]], dtype=pl.String)
    cols["is_outlier"] = run.assignments["is_outlier"]
    cols.update(stability_columns(run, ids, stems))
    frame = pl.DataFrame(cols)
    if compare_by is not None:
        frame = pl.concat([frame, group_share_columns(run, compare_by, levels[-1])], how="horizontal")
    extra = conv.drop("conversation_id")
    extra = extra.rename({c: f"input_{c}" for c in extra.columns if c in frame.columns})
    frame = pl.concat([frame, extra], how="horizontal").filter(pl.Series(keep))
    if fmt == "csv":
        frame = nested_as_json_text(conversation_as_json_text(frame))
    return frame, dropped


def stability_columns(run: Run, ids: dict[int, list[str | None]], stems: list[str]) -> dict[str, pl.Series]:
    """``<stem>_stability`` per exported level (each row's node's stability), when the run has it."""
    tax = run.taxonomy
    if not any(n.stability is not None for n in tax.nodes):
        return {}
    return {
        f"{stems[lv]}_stability": pl.Series(
            [None if x is None else tax.by_id[x].stability for x in level_ids], dtype=pl.Float64
        )
        for lv, level_ids in ids.items()
    }


def group_share_columns(run: Run, by: str, level: int) -> pl.DataFrame:
    """Per row, its node's comparison across the groups of column ``by`` at ``level``
    (:func:`bailclio.taxonomy.compare.compare_groups`): ``share_<group>`` (the node's share of
    each group's rows), ``share_<group>_lo`` / ``_hi`` (its 95% interval), ``compare_q`` and
    ``compare_significant``; in the order of the assignments table."""
    from bailclio.taxonomy.compare import compare_groups

    result = compare_groups(run, by, level)
    by_node = {n.id: n for n in result.nodes}
    node_ids = run.level_ids(level)
    cols: dict[str, list[Any]] = {}
    for g in result.groups:
        for key, pick in (
            ("", lambda s: s.share),
            ("_lo", lambda s: s.ci95[0]),
            ("_hi", lambda s: s.ci95[1]),
        ):
            cols[f"share_{g}{key}"] = [pick(by_node[x].groups[g]) for x in node_ids]
    cols["compare_q"] = [by_node[x].q for x in node_ids]
    cols["compare_significant"] = [by_node[x].significant for x in node_ids]
    return pl.DataFrame(cols)


def conversation_as_json_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its ``conversation`` list column (if any) as JSON text, for CSV output."""
    if "conversation" not in frame.columns:
        return frame
    return frame.with_columns(
        pl.Series(
            "conversation",
            [
                None if t is None else json.dumps(t, ensure_ascii=False)
                for t in frame["conversation"].to_list()
            ],
            dtype=pl.String,
        )
    )


def nested_as_json_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every list or struct column as JSON text (CSV holds no nested values)."""
    nested = [c for c, t in frame.schema.items() if isinstance(t, pl.List | pl.Struct | pl.Array)]
    return frame.with_columns(
        pl.Series(
            c, [None if v is None else json.dumps(v, ensure_ascii=False) for v in frame[c].to_list()]
        ).cast(pl.String)
        for c in nested
    )


def default_out(run: Run, fmt: str, level: int | None) -> Path:
    suffix = f"-level{level}" if level is not None else ""
    return run.path / f"export-{fmt}{suffix}{EXTENSIONS[fmt]}"


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_START = r"^[=+\-@\t\r]"


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return) gets a leading ``'``, which spreadsheets show as
    text; other cells are unchanged. For CSV only: Parquet and JSONL keep the exact text.

    >>> neutralise_formulas(pl.DataFrame({"t": ["=1+1", "ok", "-2", None]}))["t"].to_list()
    ["'=1+1", 'ok', "'-2", None]
    """
    texts = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in texts
    )


def write_frame(frame: pl.DataFrame, fmt: str, out: Path) -> None:
    def write(tmp: Path) -> None:
        if fmt in ("bailbench", "csv"):
            neutralise_formulas(frame).write_csv(tmp, quote_style="necessary", line_terminator="\n")
        elif fmt == "jsonl":
            frame.write_ndjson(tmp)
        else:
            frame.write_parquet(tmp)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(out, write)  # the previous file is replaced only once this one is whole
