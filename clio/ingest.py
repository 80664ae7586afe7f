"""Read any supported input file into the conversations frame, plus rejects.

Supported files: ``.jsonl`` / ``.ndjson``, ``.json`` (an array of objects, or an object with a
``data``/``rows``/``conversations`` array), ``.parquet``, ``.csv`` and ``.tsv``.

Two shapes are accepted:

* chat transcripts: a ``conversation`` (or ``messages``) column holding ``{role, content}`` turns,
  as in WildChat;
* single texts: a text column, named by ``text_column`` or found among ``text``, ``content``,
  ``prompt`` (BailBench's ``content,subcategory,category`` is one).

Every other column is preserved. Rows that cannot be used (a JSON line that does not parse, a
missing or empty text, an empty conversation, a turn of the wrong type, bytes that are not UTF-8, a
missing id) are returned as rejects with their 1-based line/row number, the field and the reason;
nothing is dropped silently. A file that cannot be read at all, has no usable text column, or
repeats an id raises :class:`~bailclio.errors.UserError`.

Example::

    >>> ing = read_input("data/bailbench.csv", limit=3)
    >>> ing.frame.columns
    ['conversation_id', 'text', 'content', 'subcategory', 'category', 'source_line']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import atomic, readers
from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.readers import DEFAULT_MAX_RECORD_BYTES, Record
from bailclio.rows import (
    CONVERSATION_CANDIDATES,
    ID_CANDIDATES,
    TEXT_CANDIDATES,
    RowReject,
    Shape,
    accept,
)
from bailclio.rows import render_conversation as render_conversation  # part of this module's interface


@dataclass
class Ingested:
    """The accepted rows (``frame``) and the rejected ones (``rejects``)."""

    frame: pl.DataFrame
    rejects: list[dict[str, Any]] = field(default_factory=list)
    shape: str = "text"  # "text" | "conversation"
    text_source: str = ""
    rows_read: int = 0

    def write_rejects(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(rej, ensure_ascii=False, default=str) + "\n" for rej in self.rejects)
        atomic.write_bytes(p, lines.encode("utf-8", errors="backslashreplace"))
        return p


# --------------------------------------------------------------------------- the one reader


@dataclass
class Chunk:
    """Accepted rows and rejects of a stretch of the input, in input order."""

    rows: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    first_row: int  # index of the chunk's first accepted row among all accepted rows
    shape: Shape | None

    @property
    def frame(self) -> pl.DataFrame:
        """The accepted rows as a table (``read_input``'s columns)."""
        if not self.rows or self.shape is None:
            return pl.DataFrame()
        return to_frame(self.rows, self.shape.shape)


def detect_shape(
    label: Path | str, rec: dict[str, Any], text_column: str | None, id_column: str | None
) -> Shape:
    """The input's shape from its first readable record."""
    if text_column is not None:
        if text_column not in rec:
            raise UserError(f"{label}: text column '{text_column}' not found; columns are: {', '.join(rec)}")
        shape = "conversation" if text_column in CONVERSATION_CANDIDATES else "text"
        source = text_column
    else:
        found = [("conversation", n) for n in CONVERSATION_CANDIDATES if n in rec]
        found += [("text", n) for n in TEXT_CANDIDATES if n in rec]
        if not found:
            raise UserError(
                f"{label}: no usable text column (looked for "
                f"{', '.join(CONVERSATION_CANDIDATES + TEXT_CANDIDATES)}; columns are: {', '.join(rec)}); "
                "name one with --text-column"
            )
        shape, source = found[0]
    return Shape(shape, source, id_column or next((c for c in ID_CANDIDATES if c in rec), None))


def ingest(
    label: Path | str,
    records: Iterable[Record],
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
    chunk_rows: int | None = None,
    select: Collection[int] | None = None,
    stats: dict[str, int] | None = None,
) -> Iterator[Chunk]:
    """Check every record and yield the accepted rows and the rejects in chunks of up to
    ``chunk_rows`` records (one chunk when None). ``limit`` stops after that many records;
    ``select`` (0-based record numbers) reads only those. ``stats`` is kept up to date with
    ``rows_read``, ``accepted`` and ``rejected``. A repeated id, or an input without a usable
    row, raises :class:`UserError` (after the chunks before it)."""
    stats = stats if stats is not None else {}
    stats.update(rows_read=0, accepted=0, rejected=0)
    wanted = None if select is None else {int(i) for i in select}
    shape: Shape | None = None
    seen: dict[str, int] = {}
    chunk = Chunk([], [], 0, None)
    first_reject: dict[str, Any] | None = None
    for index, (line_no, rec, error, raw) in enumerate(records):
        if limit is not None and stats["rows_read"] >= limit:
            break
        if wanted is not None and index not in wanted:
            continue
        stats["rows_read"] += 1
        if rec is None:
            chunk.rejects.append({"line": line_no, "field": None, "reason": error, "raw": raw})
        else:
            if shape is None:
                shape = chunk.shape = detect_shape(label, rec, text_column, id_column)
            try:
                row = accept(rec, index, shape, max_chars)
            except RowReject as rej:
                raw = raw or json.dumps(rec, ensure_ascii=False, default=str)[: readers.RAW_KEPT]
                chunk.rejects.append({"line": line_no, "field": rej.field, "reason": rej.reason, "raw": raw})
            else:
                cid = row["conversation_id"]
                if cid in seen:
                    raise UserError(
                        f"{label}: line {line_no}: duplicate id '{cid}' (first seen on line {seen[cid]})"
                    )
                seen[cid] = line_no
                row["source_line"] = line_no
                chunk.rows.append(row)
        if first_reject is None and chunk.rejects:
            first_reject = chunk.rejects[0]
        if chunk_rows is not None and len(chunk.rows) + len(chunk.rejects) >= chunk_rows:
            stats["accepted"] += len(chunk.rows)
            stats["rejected"] += len(chunk.rejects)
            yield chunk
            chunk = Chunk([], [], stats["accepted"], shape)
    stats["accepted"] += len(chunk.rows)
    stats["rejected"] += len(chunk.rejects)
    if stats["rows_read"] == 0:
        raise UserError(f"{label}: no rows")
    if shape is None:
        first = first_reject or {"reason": "?"}
        raise UserError(f"{label}: no readable rows ({stats['rejected']} rejected; first: {first['reason']})")
    if stats["accepted"] == 0:
        first = first_reject or {"line": "?", "field": None, "reason": "?"}
        raise UserError(
            f"{label}: no usable rows: all {stats['rejected']} rejected "
            f"(line {first['line']}, field '{first['field']}': {first['reason']})"
        )
    if chunk.rows or chunk.rejects:
        yield chunk


def read_input(
    path: str | Path,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    select: Collection[int] | None = None,
) -> Ingested:
    """Read ``path`` into an :class:`Ingested` (see the module docstring): all the chunks of
    :func:`ingest` over :func:`bailclio.readers.iter_records`, joined."""
    p = Path(path)
    records = readers.iter_records(p, max_record_bytes)
    chunks = ingest(
        p,
        records,
        text_column=text_column,
        id_column=id_column,
        limit=limit,
        max_chars=max_chars,
        select=select,
    )
    return joined(chunks)


def joined(chunks: Iterable[Chunk]) -> Ingested:
    """One :class:`Ingested` from :func:`ingest`'s chunks."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    shape: Shape | None = None
    for chunk in chunks:
        rows += chunk.rows
        rejects += chunk.rejects
        shape = chunk.shape or shape
    assert shape is not None  # ingest raises on an input without a readable row
    return Ingested(
        frame=to_frame(rows, shape.shape),
        rejects=rejects,
        shape=shape.shape,
        text_source=shape.source,
        rows_read=len(rows) + len(rejects),
    )


def read_data(
    data: Any,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
    label: str = "data",
) -> Ingested:
    """In-memory rows into an :class:`Ingested`, checked exactly as a file's rows are.

    ``data`` is a polars (or pandas) frame, a list of texts, a list of transcripts (each a list of
    ``{role, content}`` turns) or a list of records (dicts). Row numbers in errors and rejects are
    1-based; ``label`` names the data in messages.

        >>> ing = read_data(["I won't help with that.", "", "Please stop."])
        >>> ing.frame["text"].to_list(), [r["reason"] for r in ing.rejects]
        (["I won't help with that.", 'Please stop.'], ['empty text'])
        >>> read_data([[{"role": "user", "content": "hi"}]]).shape
        'conversation'
    """
    records = memory_records(data, label)
    chunks = ingest(
        label, records, text_column=text_column, id_column=id_column, limit=limit, max_chars=max_chars
    )
    return joined(chunks)


def memory_records(data: Any, label: str) -> Iterator[Record]:
    """In-memory rows as the records :func:`ingest` takes."""
    if isinstance(data, pl.DataFrame):
        rows: Any = data.iter_rows(named=True)
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas
        rows = pl.from_pandas(data).iter_rows(named=True)
    elif isinstance(data, str | bytes) or not hasattr(data, "__iter__"):
        raise UserError(f"{label}: expected a frame or a list of texts, transcripts or records")
    else:
        rows = data
    for i, item in enumerate(rows, start=1):
        if isinstance(item, dict):
            if readers.nesting_depth(item) > readers.MAX_NESTING:
                yield i, None, f"nested more than {readers.MAX_NESTING} levels deep", ""
            else:
                yield i, item, None, ""
        elif isinstance(item, str):
            yield i, {"text": item}, None, ""
        elif isinstance(item, list | tuple):
            yield i, {"conversation": list(item)}, None, ""
        else:
            yield i, None, f"expected a text, a transcript or a record, got {type(item).__name__}", repr(item)


def to_frame(rows: list[dict[str, Any]], shape: str) -> pl.DataFrame:
    """Accepted rows as the conversations table: every column any row has, in first-seen order."""
    columns: dict[str, None] = {"conversation_id": None, "text": None}
    if shape == "conversation":
        columns["conversation"] = None
    for row in rows:
        for key in row:
            columns.setdefault(key, None)
    data: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in columns}
    series = []
    for name, values in data.items():
        if name == "conversation":
            dtype = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
            series.append(pl.Series(name, values, dtype=dtype))
            continue
        try:
            series.append(pl.Series(name, values, strict=True))
        except (TypeError, pl.exceptions.PolarsError, OverflowError):
            series.append(pl.Series(name, [None if v is None else str(v) for v in values]))
    frame = pl.DataFrame(series)
    if "source_line" in frame.columns:
        frame = frame.with_columns(pl.col("source_line").cast(pl.Int64))
    return frame


@dataclass
class Selection:
    """The records ``--limit N --shuffle`` takes: N drawn at random (seeded) from the input."""

    indices: np.ndarray  # sorted 0-based record numbers, in file order
    records: int  # records in the input
    seed: int

    def describe(self) -> dict[str, Any]:
        """What the manifest records: enough to take the same rows again and to check them."""
        listed = self.indices.tolist()
        digest = hashlib.sha256(",".join(map(str, listed)).encode()).hexdigest()
        return {
            "shuffle": True,
            "seed": self.seed,
            "records_in_input": self.records,
            "taken": len(listed),
            "record_indices_sha256": digest,
            "record_indices": listed,
        }


def shuffled_selection(
    path: str | Path, limit: int, seed: int, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Selection:
    """``limit`` record numbers of ``path`` drawn without replacement by a generator seeded with
    ``seed`` (all of them when the input has no more)."""
    n = readers.count_records(path, max_record_bytes)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n, size=min(limit, n), replace=False)).astype(np.int64)
    return Selection(picked, n, seed)


def input_selection(path: str | Path, cfg: Config) -> Selection | None:
    """The records ``[input] limit`` with ``shuffle`` takes (None: the first ``limit``, or all)."""
    if not (cfg.input.shuffle and cfg.input.limit):
        return None
    return shuffled_selection(path, cfg.input.limit, cfg.seed, cfg.input.max_record_bytes)
