"""Records of an input file, read with bounded memory: the one place that reads input files.

Each reader yields ``(line, record | None, error | None, raw)`` per record: the 1-based line (or
row) the record starts on, the record as a dict (or None with the reason it cannot be read) and
the raw text for the rejects file. Supported files: ``.jsonl`` / ``.ndjson``, ``.json``,
``.parquet``, ``.csv``, ``.tsv``.

Limits, so that no input can take unbounded memory or time:

* a line (JSONL) or record (CSV/TSV) longer than ``max_record_bytes`` (``[input]
  max_record_bytes``) is a reject that says so, and reading goes on at the next line; a file without
  line ends is read in blocks, never whole;
* a record nested deeper than :data:`MAX_NESTING` levels is a reject, not a crash;
* only regular files are read: a FIFO, a device or a socket is refused in one line (reading
  ``/dev/zero`` or a pipe nobody writes to would never end);
* a ``.json`` document is parsed whole, so it is refused above ``max_record_bytes`` times
  :data:`JSON_DOCUMENT_FACTOR`; use JSONL for larger inputs.

In CSV, a stray quote that joins several lines into one record with the wrong number of fields
rejects only the line it is on (the reject names the lines it joined), and the lines after it are
read again as rows of their own.
"""

from __future__ import annotations

import csv
import json
import re
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bailclio.errors import UserError

Record = tuple[int, dict[str, Any] | None, str | None, str]  # line, record | None, error, raw
MAX_NESTING = 64  # lists and objects inside one record
DEFAULT_MAX_RECORD_BYTES = 8 << 20
JSON_DOCUMENT_FACTOR = 64
READ_BLOCK = 1 << 16
PARQUET_BATCH = 4096
BOM = b"\xef\xbb\xbf"
RAW_KEPT = 2000  # characters of an over-long or unreadable line kept in its reject


class LineTooLong(Exception):
    """A line longer than the limit; it has been skipped."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"line longer than {limit} bytes (the input.max_record_bytes limit); skipped")
        self.line = line
        self.limit = limit
        self.head = ""


def check_input_file(path: str | Path) -> Path:
    """``path`` as a regular file to read, or one line saying why not."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise UserError(f"{p}: is a directory, expected an input file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise UserError(f"{p}: is {kind}, not a regular file; save the input to a file first")
    return p


def nesting_depth(value: Any) -> int:
    """How many lists and objects deep ``value`` goes (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list | tuple):
            deepest = max(deepest, d)
            if d <= MAX_NESTING:
                stack.extend((x, d + 1) for x in v if isinstance(x, dict | list | tuple))
    return deepest


# --------------------------------------------------------------------------- line reading


class ByteLines:
    """The lines of a binary file ending in ``sep``, each at most ``limit`` bytes; a longer line
    raises :class:`LineTooLong` (once) after it has been skipped in blocks."""

    def __init__(self, fh: IO[bytes], limit: int, sep: bytes = b"\n") -> None:
        self.fh, self.limit, self.sep = fh, limit, sep
        self.buf = bytearray()
        self.line_no = 0
        self.eof = False

    def __iter__(self) -> ByteLines:
        return self

    def _fill(self) -> bool:
        block = self.fh.read(READ_BLOCK)
        if not block:
            self.eof = True
            return False
        self.buf += block
        return True

    def __next__(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(self.sep, start)
            if i >= 0 and i < self.limit + len(self.sep):
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                self.line_no += 1
                return line
            if i >= 0 or len(self.buf) > self.limit:
                self.line_no += 1
                self._skip_line()
            if self.eof or not self._fill():
                if not self.buf:
                    raise StopIteration
                line, self.buf = bytes(self.buf), bytearray()
                self.line_no += 1
                return line
            start = max(0, len(self.buf) - READ_BLOCK - len(self.sep))

    def _skip_line(self) -> None:
        head = bytes(self.buf[:RAW_KEPT]).decode("utf-8", "replace")
        while True:
            i = self.buf.find(self.sep)
            if i >= 0:
                del self.buf[: i + 1]
                break
            self.buf.clear()
            if not self._fill():
                break
        exc = LineTooLong(self.line_no, self.limit)
        exc.head = head
        raise exc


class TextLines:
    """The lines of a text file (any line ending), each at most ``limit`` characters, with
    ``push_back`` to read lines again; a longer line raises :class:`LineTooLong` once."""

    def __init__(self, fh: IO[str], limit: int) -> None:
        self.fh, self.limit = fh, limit
        self.line_no = 0
        self.pending: list[str] = []
        self.recent: list[str] = []  # the lines handed out since the last mark()

    def __iter__(self) -> TextLines:
        return self

    def mark(self) -> None:
        self.recent = []

    def push_back(self, lines: list[str]) -> None:
        self.pending.extend(reversed(lines))
        self.line_no -= len(lines)

    def __next__(self) -> str:
        if self.pending:
            line = self.pending.pop()
        else:
            line = self.fh.readline(self.limit + 1)
            if not line:
                raise StopIteration
            if len(line) > self.limit and not line.endswith(("\n", "\r")):
                head = line[:RAW_KEPT]
                while line and not line.endswith(("\n", "\r")):
                    line = self.fh.readline(READ_BLOCK)
                self.line_no += 1
                self.recent = []
                exc = LineTooLong(self.line_no, self.limit)
                exc.head = head
                raise exc
        self.line_no += 1
        if self.line_no == 1 and line.startswith("\ufeff"):
            line = line[1:]
        self.recent.append(line)
        return line


# --------------------------------------------------------------------------- formats


def _line_reject(exc: LineTooLong) -> Record:
    return exc.line, None, str(exc), exc.head


def iter_jsonl(path: Path, max_record_bytes: int) -> Iterator[Record]:
    """One record per non-blank line; LF or CRLF endings, or CR alone where the file has no LF."""
    with path.open("rb") as fh:
        head = fh.read(READ_BLOCK)
        fh.seek(0)
        sep = b"\r" if b"\r" in head and b"\n" not in head else b"\n"
        lines = ByteLines(fh, max_record_bytes, sep)
        while True:
            try:
                raw_bytes = next(lines)
            except StopIteration:
                return
            except LineTooLong as exc:
                yield _line_reject(exc)
                continue
            if lines.line_no == 1 and raw_bytes.startswith(BOM):
                raw_bytes = raw_bytes[len(BOM) :]
            if raw_bytes.strip():
                yield parse_json_line(lines.line_no, raw_bytes)


def parse_json_line(line_no: int, raw_bytes: bytes) -> Record:
    try:
        raw = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")[:RAW_KEPT]
        return line_no, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})", shown
    raw = raw.rstrip("\r\n")
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as exc:
        return line_no, None, f"unparseable JSON: {exc.msg} (column {exc.colno})", raw[:RAW_KEPT]
    except RecursionError:
        return line_no, None, f"nested more than {MAX_NESTING} levels deep", raw[:RAW_KEPT]
    if not isinstance(rec, dict):
        return line_no, None, f"expected a JSON object, got {type(rec).__name__}", raw[:RAW_KEPT]
    if nesting_depth(rec) > MAX_NESTING:
        return line_no, None, f"nested more than {MAX_NESTING} levels deep", raw[:RAW_KEPT]
    return line_no, rec, None, raw


def iter_json(path: Path, max_record_bytes: int) -> Iterator[Record]:
    """A JSON array of objects, or an object with a ``data``/``rows``/``conversations`` array."""
    size = path.stat().st_size
    if size > max_record_bytes * JSON_DOCUMENT_FACTOR:
        raise UserError(
            f"{path}: a .json document of {size} bytes is larger than this reader takes "
            f"({max_record_bytes * JSON_DOCUMENT_FACTOR}); convert it to JSONL (one object per line)"
        )
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise UserError(f"{path}: nested more than {MAX_NESTING} levels deep") from exc
    if isinstance(doc, dict):
        for key in ("data", "rows", "conversations", "records"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected a JSON array of objects")
    for i, rec in enumerate(doc, start=1):
        if not isinstance(rec, dict):
            yield i, None, f"expected a JSON object, got {type(rec).__name__}", json.dumps(rec)[:RAW_KEPT]
        elif nesting_depth(rec) > MAX_NESTING:
            yield i, None, f"nested more than {MAX_NESTING} levels deep", ""
        else:
            yield i, rec, None, ""


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(s: str) -> bool:
    """A lone surrogate: bytes that were not UTF-8, or a JSON surrogate escape without its pair."""
    return _SURROGATE.search(s) is not None


def _header(path: Path, reader: Any) -> list[str] | None:
    header = next(reader, None)
    if header is None:
        return None
    if any(has_surrogate(h) for h in header):
        raise UserError(f"{path}: line 1: a column name is not valid UTF-8")
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise UserError(f"{path}: line 1: column '{dupes[0]}' appears more than once")
    return header


def iter_delimited(path: Path, sep: str, max_record_bytes: int) -> Iterator[Record]:
    """CSV (RFC 4180 quoting) or TSV (no quoting: a ``"`` is an ordinary character), streamed row
    by row: a byte-order mark is dropped, bytes that are not UTF-8 reject only their row, any line
    ending works, and the line number is the file line the record starts on. An empty cell is the
    empty string."""
    kind = "TSV" if sep == "\t" else "CSV"
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    csv.field_size_limit(max(max_record_bytes, 1 << 10))
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        lines = TextLines(fh, max_record_bytes)

        def reader() -> Any:
            return csv.reader(lines, delimiter=sep, quoting=quoting, strict=False)

        try:
            rows = reader()
            header = _header(path, rows)
        except (LineTooLong, csv.Error) as exc:
            raise UserError(f"{path}: line 1: cannot read the header as {kind}: {exc}") from exc
        if header is None:
            return
        while True:
            lines.mark()
            start = lines.line_no + 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except LineTooLong as exc:
                yield _line_reject(exc)
                rows = reader()
                continue
            except csv.Error as exc:  # a quoted field that runs past the record limit
                joined = lines.recent
                yield start, None, f"lines {start}-{lines.line_no}: cannot parse as {kind}: {exc}", ""
                lines.push_back(joined[1:])
                rows = reader()
                continue
            if not row or row == [""]:
                continue
            joined = lines.line_no > start and sep == "," and "".join(lines.recent).count('"') % 2 == 1
            if len(row) != len(header) or joined:  # joined: a quote opened and never closed
                yield _wrong_width(lines, start, row, sep, len(header))
                rows = reader()
                continue
            bad = [h for h, v in zip(header, row, strict=True) if has_surrogate(v)]
            if bad:
                yield start, None, f"not valid UTF-8 in field '{bad[0]}'", ""
                continue
            yield start, dict(zip(header, row, strict=True)), None, ""


def _wrong_width(lines: TextLines, start: int, row: list[str], sep: str, width: int) -> Record:
    """A record with the wrong number of fields; when it ran over several lines (a stray quote
    joined them), only its first line is rejected and the others are read again."""
    end = lines.line_no
    reason = f"expected {width} fields, got {len(row)}" if len(row) != width else "a quote is never closed"
    if end > start and len(lines.recent) == end - start + 1:
        lines.push_back(lines.recent[1:])
        reason += (
            f" (an unmatched quote on line {start} joined lines {start}-{end}; those after it are read again)"
        )
    return start, None, reason, sep.join(row)[:RAW_KEPT]


def iter_parquet(path: Path) -> Iterator[Record]:
    """Rows of a Parquet file, read a batch of row groups at a time."""
    import pyarrow.parquet as pq  # pyarrow is heavy to import and only Parquet inputs need it

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"{path}: cannot read Parquet: {exc}".splitlines()[0]) from exc
    line = 0
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
            for rec in batch.to_pylist():
                line += 1
                if nesting_depth(rec) > MAX_NESTING:
                    yield line, None, f"nested more than {MAX_NESTING} levels deep", ""
                else:
                    yield line, rec, None, ""
    except OSError as exc:
        raise UserError(f"{path}: row {line + 1}: cannot read Parquet: {exc}".splitlines()[0]) from exc


def iter_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Record]:
    """Every record of ``path`` in file order (see the module docstring)."""
    p = check_input_file(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return iter_jsonl(p, max_record_bytes)
    if suffix == ".json":
        return iter_json(p, max_record_bytes)
    if suffix == ".parquet":
        return iter_parquet(p)
    if suffix == ".csv":
        return iter_delimited(p, ",", max_record_bytes)
    if suffix == ".tsv":
        return iter_delimited(p, "\t", max_record_bytes)
    raise UserError(f"{p}: unsupported input type '{suffix}' (use .jsonl, .json, .parquet, .csv, .tsv)")


def count_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> int:
    """How many records :func:`iter_records` yields, read cheaply where the format allows."""
    p = check_input_file(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # heavy; only Parquet inputs need it

        try:
            return int(pq.ParquetFile(p).metadata.num_rows)
        except Exception as exc:
            raise UserError(f"{p}: cannot read Parquet: {exc}".splitlines()[0]) from exc
    return sum(1 for _ in iter_records(p, max_record_bytes))
