"""Read an input file in chunks, with the same validation as :func:`bailclio.ingest.read_input`.

``read_input`` holds the whole file in memory; this module yields it chunk by chunk so a large
input can be placed row by row with bounded memory (:mod:`bailclio.scale`). Parquet is read by row
group batches (pyarrow); CSV/TSV and JSONL are read by ingest's own row-by-row readers, which
stream from the file, so quoting, empty cells, line numbers and bad bytes are handled once.
Every record goes through ingest's own checks (:func:`bailclio.ingest._accept`), so a row is
accepted or rejected, with the same line number and reason, exactly as ``read_input`` would.

Example::

    >>> for chunk in accepted_chunks("data/bailbench.csv", chunk_rows=1000):   # doctest: +SKIP
    ...     print(chunk.frame.height, len(chunk.rejects))
    1000 0
    630 0
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import ingest
from bailclio.errors import UserError

Record = tuple[int, dict[str, Any] | None, str | None, str]  # line, record | None, error, raw
READ_BATCH = 4096


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"{path}: cannot read Parquet: {exc}".splitlines()[0]) from exc
    line = 0
    for batch in pf.iter_batches(batch_size=READ_BATCH):
        for rec in batch.to_pylist():
            line += 1
            yield line, rec, None, ""


def iter_records(path: str | Path) -> Iterator[Record]:
    """Every record of ``path`` in file order, as ``(line, record | None, error, raw)``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected an input file")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return _iter_parquet(p)
    return ingest._records(p)  # CSV/TSV/JSONL stream row by row; JSON and the errors as read_input


def count_records(path: str | Path) -> int:
    """How many records ``iter_records`` yields, read cheaply where the format allows."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(p).metadata.num_rows)
        except Exception as exc:
            raise UserError(f"{p}: cannot read Parquet: {exc}".splitlines()[0]) from exc
    return sum(1 for _ in iter_records(p))


def column_values(path: str | Path, column: str) -> list[Any]:
    """The values of one column for every record (None where a record lacks it or is unreadable)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        lazy = pl.scan_parquet(p)
        names = lazy.collect_schema().names()
        if column not in names:
            raise UserError(f"{p}: column '{column}' not found; columns are: {', '.join(names)}")
        return lazy.select(pl.col(column).cast(pl.String)).collect()[column].to_list()
    values: list[Any] = []
    found = False
    for _, rec, _, _ in iter_records(p):
        if rec is not None and column in rec:
            found = True
            v = rec[column]
            values.append(None if v is None else str(v))
        else:
            values.append(None)
    if not found:
        raise UserError(f"{p}: column '{column}' not found in any row")
    return values


@dataclass
class Shape:
    """What the first readable record says about the file: transcripts or texts, and where."""

    shape: str
    source: str
    id_field: str | None


def detect_shape(path: str | Path, text_column: str | None, id_column: str | None) -> Shape:
    p = Path(path)
    for _, rec, _, _ in iter_records(p):
        if rec is not None:
            shape, source = ingest._detect_shape(p, rec, text_column)
            id_field = id_column or next((c for c in ingest.ID_CANDIDATES if c in rec), None)
            return Shape(shape, source, id_field)
    raise UserError(f"{p}: no readable rows")


@dataclass
class Chunk:
    frame: pl.DataFrame  # accepted rows, as read_input's frame
    rejects: list[dict[str, Any]] = field(default_factory=list)
    first_row: int = 0  # index of the chunk's first accepted row among all accepted rows


def accepted_chunks(
    path: str | Path,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
    chunk_rows: int = 10000,
    stats: dict[str, int] | None = None,
) -> Iterator[Chunk]:
    """Accepted rows of ``path`` in chunks of up to ``chunk_rows`` records read; ``stats`` (when
    given) is kept up to date with ``rows_read``, ``accepted`` and ``rejected``."""
    p = Path(path)
    stats = stats if stats is not None else {}
    stats.update(rows_read=0, accepted=0, rejected=0)
    shape: Shape | None = None
    seen: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    first_row = 0

    def flush() -> Chunk:
        nonlocal rows, rejects, first_row
        frame = ingest._to_frame(rows, shape.shape) if rows and shape else pl.DataFrame()
        chunk = Chunk(frame, rejects, first_row)
        first_row += len(rows)
        rows, rejects = [], []
        return chunk

    for index, (line_no, rec, error, raw) in enumerate(iter_records(p)):
        if limit is not None and stats["rows_read"] >= limit:
            break
        stats["rows_read"] += 1
        if rec is None:
            rejects.append({"line": line_no, "field": None, "reason": error, "raw": raw})
        else:
            if shape is None:
                kind, source = ingest._detect_shape(p, rec, text_column)
                shape = Shape(
                    kind, source, id_column or next((c for c in ingest.ID_CANDIDATES if c in rec), None)
                )
            try:
                row = ingest._accept(rec, index, shape.shape, shape.source, shape.id_field, max_chars)
            except ingest._Reject as rej:
                rejects.append(
                    {
                        "line": line_no,
                        "field": rej.field,
                        "reason": rej.reason,
                        "raw": raw or json.dumps(rec, ensure_ascii=False, default=str),
                    }
                )
            else:
                cid = row["conversation_id"]
                if cid in seen:
                    raise UserError(
                        f"{p}: line {line_no}: duplicate id '{cid}' (first seen on line {seen[cid]})"
                    )
                seen[cid] = line_no
                row["source_line"] = line_no
                rows.append(row)
        if len(rows) + len(rejects) >= chunk_rows:
            stats["accepted"] += len(rows)
            stats["rejected"] += len(rejects)
            yield flush()
    if stats["rows_read"] == 0:
        raise UserError(f"{p}: no rows")
    if rows or rejects:
        stats["accepted"] += len(rows)
        stats["rejected"] += len(rejects)
        yield flush()
    if stats["accepted"] == 0:
        raise UserError(f"{p}: no usable rows: all {stats['rejected']} rejected")
