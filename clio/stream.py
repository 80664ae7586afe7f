"""Read an input file in chunks, with the same validation as :func:`bailclio.ingest.read_input`.

``read_input`` holds the whole file in memory; this module yields it chunk by chunk so a large
input can be placed row by row with bounded memory (:mod:`bailclio.scale`). Parquet is read by row
group batches (pyarrow); CSV/TSV and JSONL by the row-by-row readers of :mod:`bailclio.readers`,
which stream from the file, so quoting, empty cells, line numbers and bad bytes are handled once.
The chunks are those of :func:`bailclio.ingest.ingest`, the one reader: a row is accepted or
rejected, with the same line number and reason, exactly as ``read_input`` would.

Example::

    >>> for chunk in accepted_chunks("data/bailbench.csv", chunk_rows=1000):   # doctest: +SKIP
    ...     print(chunk.frame.height, len(chunk.rejects))
    1000 0
    630 0
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import ingest, readers
from bailclio.errors import UserError
from bailclio.ingest import Chunk, Shape
from bailclio.readers import DEFAULT_MAX_RECORD_BYTES, Record

__all__ = [
    "Chunk",
    "Shape",
    "accepted_chunks",
    "column_values",
    "count_records",
    "detect_shape",
    "iter_records",
]


def iter_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Record]:
    """Every record of ``path`` in file order, as ``(line, record | None, error, raw)``."""
    return readers.iter_records(path, max_record_bytes)


def count_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> int:
    """How many records ``iter_records`` yields, read cheaply where the format allows."""
    return readers.count_records(path, max_record_bytes)


def column_values(
    path: str | Path, column: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> list[Any]:
    """The values of one column for every record (None where a record lacks it or is unreadable)."""
    p = readers.check_input_file(path)
    if p.suffix.lower() == ".parquet":
        lazy = pl.scan_parquet(p)
        names = lazy.collect_schema().names()
        if column not in names:
            raise UserError(f"{p}: column '{column}' not found; columns are: {', '.join(names)}")
        return lazy.select(pl.col(column).cast(pl.String)).collect()[column].to_list()
    values: list[Any] = []
    found = False
    for _, rec, _, _ in iter_records(p, max_record_bytes):
        if rec is not None and column in rec:
            found = True
            v = rec[column]
            values.append(None if v is None else str(v))
        else:
            values.append(None)
    if not found:
        raise UserError(f"{p}: column '{column}' not found in any row")
    return values


def detect_shape(
    path: str | Path,
    text_column: str | None,
    id_column: str | None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Shape:
    """The input's shape, from its first readable record."""
    p = Path(path)
    for _, rec, _, _ in iter_records(p, max_record_bytes):
        if rec is not None:
            return ingest.detect_shape(p, rec, text_column, id_column)
    raise UserError(f"{p}: no readable rows")


def accepted_chunks(
    path: str | Path,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
    chunk_rows: int = 10000,
    stats: dict[str, int] | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    select: Collection[int] | None = None,
) -> Iterator[Chunk]:
    """Accepted rows of ``path`` in chunks of up to ``chunk_rows`` records read (the chunks of
    :func:`bailclio.ingest.ingest`); ``stats`` (when given) is kept up to date with ``rows_read``,
    ``accepted`` and ``rejected``."""
    p = Path(path)
    return ingest.ingest(
        p,
        iter_records(p, max_record_bytes),
        text_column=text_column,
        id_column=id_column,
        limit=limit,
        max_chars=max_chars,
        chunk_rows=chunk_rows,
        select=select,
        stats=stats,
    )
