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

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import atomic
from bailclio.errors import UserError

TEXT_CANDIDATES = ("text", "content", "prompt")
CONVERSATION_CANDIDATES = ("conversation", "messages")
ID_CANDIDATES = ("id", "conversation_id")
BAIL_COLUMNS = ("model", "bail_method", "bail_turn", "bail_probability", "journal")
BAIL_METHODS = ("prompt", "string", "tool")
RESERVED = ("conversation_id", "text", "conversation")


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


class _Reject(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


# --------------------------------------------------------------------------- reading records


def _jsonl_lines(path: Path) -> Iterator[bytes]:
    """The file's lines: LF or CRLF endings, or CR alone where the file has no LF; a leading
    byte-order mark is dropped."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
        if b"\r" in head and b"\n" not in head:  # old Mac line endings
            data = head + fh.read()
            if b"\n" not in data:
                lines: Iterator[bytes] = iter(data.split(b"\r"))
            else:
                lines = iter(data.splitlines(keepends=True))
        else:
            fh.seek(0)
            lines = iter(fh)
        first = True
        for line in lines:
            if first and line.startswith(_BOM):
                line = line[len(_BOM) :]
            first = False
            yield line


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    """Yield (line_no, record | None, error | None, raw) for each non-blank line."""
    for line_no, raw_bytes in enumerate(_jsonl_lines(path), start=1):
        if not raw_bytes.strip():
            continue
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                line_no,
                None,
                f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                (raw_bytes.decode("utf-8", errors="replace").rstrip("\n")),
            )
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line_no, None, f"unparseable JSON: {exc.msg} (column {exc.colno})", raw.rstrip("\r\n")
            continue
        if not isinstance(rec, dict):
            yield line_no, None, f"expected a JSON object, got {type(rec).__name__}", raw.rstrip("\r\n")
            continue
        yield line_no, rec, None, raw.rstrip("\r\n")


def _iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if isinstance(doc, dict):
        for key in ("data", "rows", "conversations", "records"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected a JSON array of objects")
    for i, rec in enumerate(doc, start=1):
        if isinstance(rec, dict):
            yield i, rec, None, ""
        else:
            yield i, None, f"expected a JSON object, got {type(rec).__name__}", json.dumps(rec)


def _iter_delimited(path: Path, sep: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    """CSV (RFC 4180 quoting) or TSV (no quoting: a ``"`` is an ordinary character), streamed row
    by row from the file: a byte-order mark is dropped, bytes that are not UTF-8 reject only their
    row, any line ending (LF, CRLF, CR alone) works, and the line number is the file line the
    record starts on. An empty cell is the empty string (an empty optional bail field counts as
    absent, see :func:`_check_bail_fields`)."""
    kind = "TSV" if sep == "\t" else "CSV"
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(_without_bom(fh), delimiter=sep, quoting=quoting, strict=False)
        try:
            header = next(reader, None)
            if header is None:
                return
            bad = [h for h in header if _has_surrogate(h)]
            if bad:
                raise UserError(f"{path}: line 1: a column name is not valid UTF-8")
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise UserError(f"{path}: line 1: column '{dupes[0]}' appears more than once")
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num
                if not row or row == [""]:
                    continue
                if len(row) != len(header):
                    raw = sep.join(row)
                    yield start, None, f"expected {len(header)} fields, got {len(row)}", raw
                    continue
                fields = [h for h, v in zip(header, row, strict=True) if _has_surrogate(v)]
                if fields:
                    yield start, None, f"not valid UTF-8 in field '{fields[0]}'", ""
                    continue
                yield start, dict(zip(header, row, strict=True)), None, ""
        except csv.Error as exc:
            raise UserError(f"{path}: line {reader.line_num}: cannot parse as {kind}: {exc}") from exc


def _without_bom(lines: Iterator[str]) -> Iterator[str]:
    """``lines`` with a leading byte-order mark dropped from the first."""
    first = True
    for line in lines:
        if first and line.startswith("\ufeff"):
            line = line[1:]
        first = False
        yield line


_BOM = b"\xef\xbb\xbf"
csv.field_size_limit(2**31 - 1)


def _has_surrogate(s: str) -> bool:
    """A lone surrogate: bytes that were not UTF-8, or a JSON surrogate escape without its pair."""
    return any("\ud800" <= ch <= "\udfff" for ch in s)


def _surrogate_field(rec: dict[str, Any]) -> str | None:
    """The first field of ``rec`` holding a lone surrogate anywhere inside it."""

    def bad(v: Any) -> bool:
        if isinstance(v, str):
            return _has_surrogate(v)
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        if isinstance(v, list | tuple):
            return any(bad(x) for x in v)
        return False

    for k, v in rec.items():
        if bad(k) or bad(v):
            return k if not _has_surrogate(k) else k.encode("utf-8", "backslashreplace").decode()
    return None


def _is_blank(s: str) -> bool:
    """No visible text: only whitespace and control characters (NUL included)."""
    return not s.translate(_INVISIBLE).strip()


_INVISIBLE = {c: None for c in [*range(0x00, 0x20), 0x7F, 0xFEFF, 0x200B]}


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    try:
        df = pl.read_parquet(path)
    except Exception as exc:
        raise UserError(f"{path}: cannot read Parquet: {exc}") from exc
    for i, rec in enumerate(df.iter_rows(named=True), start=1):
        yield i, rec, None, ""


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _iter_jsonl(path)
    if suffix == ".json":
        return _iter_json(path)
    if suffix == ".parquet":
        return _iter_parquet(path)
    if suffix == ".csv":
        return _iter_delimited(path, ",")
    if suffix == ".tsv":
        return _iter_delimited(path, "\t")
    raise UserError(f"{path}: unsupported input type '{suffix}' (use .jsonl, .json, .parquet, .csv, .tsv)")


# --------------------------------------------------------------------------- rendering


def render_conversation(turns: list[dict[str, str]], max_chars: int = 1000) -> str:
    """Render a transcript for embedding, most telling part first.

    The embedding models truncate at their token window, so the rendering leads with what matters
    most for "why did the model leave here": the last user turn (up to 60% of the budget), then
    the assistant reply that followed it (if the transcript ends with one), then earlier turns from
    the most recent backwards while the budget lasts. ``max_chars`` (about 4 characters per token)
    fits the text to the model's window.

    >>> render_conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
    ...                      {"role": "user", "content": "tell me a secret"}])
    'User: tell me a secret\\n[earlier] Assistant: hello\\n[earlier] User: hi'
    """
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    parts: list[str] = []
    budget = max_chars
    if last_user is None:  # no user turn at all: the transcript in reverse
        order = list(range(len(turns) - 1, -1, -1))
    else:
        head = f"User: {turns[last_user]['content'].strip()}"
        head = head[: max(int(max_chars * 0.6), max_chars - 200)]
        parts.append(head)
        budget -= len(head) + 1
        order = [i for i in range(len(turns) - 1, -1, -1) if i != last_user]
        after = [i for i in order if i > last_user]
        before = [i for i in order if i < last_user]
        for i in sorted(after):
            if budget <= 0:
                break
            chunk = f"{turns[i]['role'].capitalize()}: {turns[i]['content'].strip()}"[:budget]
            parts.append(chunk)
            budget -= len(chunk) + 1
        order = before
    for i in order:
        if budget <= 20:
            break
        prefix = "[earlier] " if last_user is not None else ""
        chunk = f"{prefix}{turns[i]['role'].capitalize()}: {turns[i]['content'].strip()}"[:budget]
        parts.append(chunk)
        budget -= len(chunk) + 1
    return "\n".join(parts)


# --------------------------------------------------------------------------- validation


def _clean_turns(value: Any, bail_turn: Any, non_text: list[str]) -> list[dict[str, str]]:
    """Validated turns; the non-text content parts met are appended to ``non_text``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Reject("conversation", f"not a list of turns (unparseable JSON: {exc.msg})") from exc
    if value is None:
        raise _Reject("conversation", "missing conversation")
    if not isinstance(value, list):
        raise _Reject("conversation", f"expected a list of turns, got {type(value).__name__}")
    if not value:
        raise _Reject("conversation", "empty conversation")
    turns: list[dict[str, str]] = []
    for j, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise _Reject("conversation", f"turn {j}: expected an object, got {type(turn).__name__}")
        role, content = turn.get("role"), turn.get("content")
        if not isinstance(role, str) or not role:
            raise _Reject("conversation", f"turn {j}: 'role' must be a non-empty string")
        if content is None:
            content = ""
        if isinstance(content, list):
            content = _join_parts(content, j, non_text)
        if not isinstance(content, str):
            raise _Reject("conversation", f"turn {j}: 'content' must be a string or a list of content parts")
        turns.append({"role": role.lower(), "content": content})
    if not _absent(bail_turn):
        try:
            cut = int(bail_turn)
        except (TypeError, ValueError) as exc:
            raise _Reject("bail_turn", f"expected an integer, got {bail_turn!r}") from exc
        if cut < 0 or cut >= len(turns):
            raise _Reject("bail_turn", f"{cut} is outside the conversation's {len(turns)} turns")
        turns = turns[: cut + 1]
    if all(_is_blank(t["content"]) for t in turns):
        raise _Reject("conversation", "conversation has no text")
    return turns


# OpenAI content-part types that carry text, and the key holding it.
_TEXT_PARTS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}


def _join_parts(parts: list[Any], turn: int, non_text: list[str]) -> str:
    """OpenAI multi-part content: the text parts joined by blank lines; the types of the other
    parts (images, audio, files) are appended to ``non_text``."""
    texts = []
    for k, part in enumerate(parts):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise _Reject(
                "conversation", f"turn {turn}: part {k}: expected an object, got {type(part).__name__}"
            )
        kind = part.get("type")
        key = _TEXT_PARTS.get(kind) if isinstance(kind, str) else ("text" if "text" in part else None)
        if key is not None and isinstance(part.get(key), str):
            texts.append(part[key])
        else:
            non_text.append(f"turn {turn}: {kind if isinstance(kind, str) else 'untyped'}")
    return "\n\n".join(texts)


def _absent(value: Any) -> bool:
    """An optional field left out: missing, null, or an empty CSV/TSV cell."""
    return value is None or (isinstance(value, str) and not value.strip())


def _check_bail_fields(rec: dict[str, Any]) -> None:
    method = rec.get("bail_method")
    if not _absent(method) and method not in BAIL_METHODS:
        raise _Reject("bail_method", f"must be one of {', '.join(BAIL_METHODS)}, got {method!r}")
    prob = rec.get("bail_probability")
    if not _absent(prob):
        try:
            p = float(prob)
        except (TypeError, ValueError) as exc:
            raise _Reject("bail_probability", f"expected a number, got {prob!r}") from exc
        if not 0.0 <= p <= 1.0:
            raise _Reject("bail_probability", f"must be within [0, 1], got {p}")
    journal = rec.get("journal")
    if journal is not None and not isinstance(journal, str):
        raise _Reject("journal", f"expected a string, got {type(journal).__name__}")


def _preserve(value: Any) -> Any:
    """Scalars stay as they are; nested values become JSON text so any schema can be stored."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


# --------------------------------------------------------------------------- entry point


def read_input(
    path: str | Path,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    max_chars: int = 1000,
) -> Ingested:
    """Read ``path`` into an :class:`Ingested` (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected an input file")
    return _ingest(p, _records(p), text_column, id_column, limit, max_chars)


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
    return _ingest(label, _memory_records(data, label), text_column, id_column, limit, max_chars)


def _memory_records(data: Any, label: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
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
            yield i, item, None, ""
        elif isinstance(item, str):
            yield i, {"text": item}, None, ""
        elif isinstance(item, list | tuple):
            yield i, {"conversation": list(item)}, None, ""
        else:
            yield i, None, f"expected a text, a transcript or a record, got {type(item).__name__}", repr(item)


def _ingest(
    p: Path | str,
    records: Iterator[tuple[int, dict[str, Any] | None, str | None, str]],
    text_column: str | None,
    id_column: str | None,
    limit: int | None,
    max_chars: int,
) -> Ingested:
    accepted: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    shape: str | None = None
    source: str | None = None
    seen_ids: dict[str, int] = {}
    id_field: str | None = None
    rows_read = 0
    for index, (line_no, rec, error, raw) in enumerate(records):
        if limit is not None and rows_read >= limit:
            break
        rows_read += 1
        if rec is None:
            rejects.append({"line": line_no, "field": None, "reason": error, "raw": raw})
            continue
        if shape is None:
            shape, source = _detect_shape(p, rec, text_column)
            id_field = id_column or next((c for c in ID_CANDIDATES if c in rec), None)
        try:
            row = _accept(rec, index, shape, source, id_field, max_chars)
        except _Reject as rej:
            rejects.append(
                {
                    "line": line_no,
                    "field": rej.field,
                    "reason": rej.reason,
                    "raw": raw or json.dumps(rec, ensure_ascii=False, default=str),
                }
            )
            continue
        cid = row["conversation_id"]
        if cid in seen_ids:
            raise UserError(f"{p}: line {line_no}: duplicate id '{cid}' (first seen on line {seen_ids[cid]})")
        seen_ids[cid] = line_no
        row["source_line"] = line_no
        accepted.append(row)

    if rows_read == 0:
        raise UserError(f"{p}: no rows")
    if shape is None:
        raise UserError(f"{p}: no readable rows ({len(rejects)} rejected; first: {rejects[0]['reason']})")
    if not accepted:
        first = rejects[0]
        raise UserError(
            f"{p}: no usable rows: all {len(rejects)} rejected "
            f"(line {first['line']}, field '{first['field']}': {first['reason']})"
        )
    frame = _to_frame(accepted, shape)
    return Ingested(frame=frame, rejects=rejects, shape=shape, text_source=source or "", rows_read=rows_read)


def _detect_shape(p: Path | str, rec: dict[str, Any], text_column: str | None) -> tuple[str, str]:
    if text_column is not None:
        if text_column not in rec:
            raise UserError(f"{p}: text column '{text_column}' not found; columns are: {', '.join(rec)}")
        shape = "conversation" if text_column in CONVERSATION_CANDIDATES else "text"
        return shape, text_column
    for name in CONVERSATION_CANDIDATES:
        if name in rec:
            return "conversation", name
    for name in TEXT_CANDIDATES:
        if name in rec:
            return "text", name
    raise UserError(
        f"{p}: no usable text column (looked for {', '.join(CONVERSATION_CANDIDATES + TEXT_CANDIDATES)}; "
        f"columns are: {', '.join(rec)}); name one with --text-column"
    )


def _accept(
    rec: dict[str, Any], index: int, shape: str, source: str, id_field: str | None, max_chars: int
) -> dict[str, Any]:
    if id_field is None:
        cid = str(index)
    else:
        value = rec.get(id_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _Reject(id_field, "missing id")
        if isinstance(value, dict | list):
            raise _Reject(id_field, f"id must be a string or number, got {type(value).__name__}")
        cid = str(value)
    bad = _surrogate_field(rec)
    if bad is not None:
        raise _Reject(
            bad, "not valid Unicode (a lone surrogate: bytes that were not UTF-8 or an unpaired \\u escape)"
        )
    _check_bail_fields(rec)
    out: dict[str, Any] = {"conversation_id": cid}
    if shape == "conversation":
        non_text: list[str] = []
        turns = _clean_turns(rec.get(source), rec.get("bail_turn"), non_text)
        out["text"] = render_conversation(turns, max_chars)
        out["conversation"] = turns
        if non_text:
            out["non_text_parts"] = "; ".join(non_text)
    else:
        value = rec.get(source)
        if value is None:
            raise _Reject(source, "missing text")
        if not isinstance(value, str):
            raise _Reject(source, f"expected a string, got {type(value).__name__}")
        if _is_blank(value):
            raise _Reject(source, "empty text")
        out["text"] = value.strip()
    for key, value in rec.items():
        if key in RESERVED or key == source:
            if key == source and shape == "text" and key not in RESERVED:
                out[key] = value
            continue
        out[key] = _preserve(value)
    return out


def _to_frame(rows: list[dict[str, Any]], shape: str) -> pl.DataFrame:
    columns: list[str] = ["conversation_id", "text"]
    if shape == "conversation":
        columns.append("conversation")
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
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
