"""The checks every input row goes through, whatever file or frame it came from.

A record is accepted as a row (its id, its text or its transcript, every other column preserved)
or rejected with the field and the reason (:class:`RowReject`). :mod:`bailclio.ingest` runs these
checks over the records of :mod:`bailclio.readers`.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from bailclio.readers import has_surrogate

TEXT_CANDIDATES = ("text", "content", "prompt")
CONVERSATION_CANDIDATES = ("conversation", "messages")
ID_CANDIDATES = ("id", "conversation_id")
BAIL_COLUMNS = ("model", "bail_method", "bail_turn", "bail_probability", "journal")
BAIL_METHODS = ("prompt", "string", "tool")
RESERVED = ("conversation_id", "text", "conversation")


@dataclass
class Shape:
    """What the first readable record says about the input: transcripts or texts, and where."""

    shape: str  # "text" | "conversation"
    source: str  # the column holding the text or the transcript
    id_field: str | None


class RowReject(Exception):
    """A record that cannot be used: the field and the reason go to the rejects file."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


def surrogate_field(rec: dict[str, Any]) -> str | None:
    """The first field of ``rec`` holding a lone surrogate anywhere inside it."""

    def bad(v: Any) -> bool:
        if isinstance(v, str):
            return has_surrogate(v)
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        if isinstance(v, list | tuple):
            return any(bad(x) for x in v)
        return False

    nested = [v for v in rec.values() if isinstance(v, dict | list | tuple)]
    plain = "".join([*rec, *(v for v in rec.values() if isinstance(v, str))])
    if not nested and not has_surrogate(plain):  # the common case, in one scan
        return None
    for k, v in rec.items():
        if bad(k) or bad(v):
            return k if not has_surrogate(k) else k.encode("utf-8", "backslashreplace").decode()
    return None


# Letters, numbers, punctuation and symbols are visible; these of them are drawn as nothing.
_INVISIBLE_VISIBLES = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(s: str) -> bool:
    """No visible text: only whitespace, control and format characters (zero-width spaces and
    joiners, byte-order marks, soft hyphens, direction marks), combining marks and blank fillers
    (Hangul fillers, the braille blank); the same rule for every text and every turn."""
    for ch in s:
        if ch in _INVISIBLE_VISIBLES:
            continue
        if unicodedata.category(ch)[0] in "LNPS":
            return False
    return True


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
            raise RowReject("conversation", f"not a list of turns (unparseable JSON: {exc.msg})") from exc
    if value is None:
        raise RowReject("conversation", "missing conversation")
    if not isinstance(value, list):
        raise RowReject("conversation", f"expected a list of turns, got {type(value).__name__}")
    if not value:
        raise RowReject("conversation", "empty conversation")
    turns: list[dict[str, str]] = []
    for j, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise RowReject("conversation", f"turn {j}: expected an object, got {type(turn).__name__}")
        role, content = turn.get("role"), turn.get("content")
        if not isinstance(role, str) or not role:
            raise RowReject("conversation", f"turn {j}: 'role' must be a non-empty string")
        if content is None:
            content = ""
        if isinstance(content, list):
            content = _join_parts(content, j, non_text)
        if not isinstance(content, str):
            raise RowReject(
                "conversation", f"turn {j}: 'content' must be a string or a list of content parts"
            )
        turns.append({"role": role.lower(), "content": content})
    if not _absent(bail_turn):
        try:
            cut = int(bail_turn)
        except (TypeError, ValueError) as exc:
            raise RowReject("bail_turn", f"expected an integer, got {bail_turn!r}") from exc
        if cut < 0 or cut >= len(turns):
            raise RowReject("bail_turn", f"{cut} is outside the conversation's {len(turns)} turns")
        turns = turns[: cut + 1]
    if all(is_blank(t["content"]) for t in turns):
        raise RowReject("conversation", "conversation has no text")
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
            raise RowReject(
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
        raise RowReject("bail_method", f"must be one of {', '.join(BAIL_METHODS)}, got {method!r}")
    prob = rec.get("bail_probability")
    if not _absent(prob):
        try:
            p = float(prob)
        except (TypeError, ValueError) as exc:
            raise RowReject("bail_probability", f"expected a number, got {prob!r}") from exc
        if not 0.0 <= p <= 1.0:
            raise RowReject("bail_probability", f"must be within [0, 1], got {p}")
    journal = rec.get("journal")
    if journal is not None and not isinstance(journal, str):
        raise RowReject("journal", f"expected a string, got {type(journal).__name__}")


def _preserve(value: Any) -> Any:
    """Scalars stay as they are; nested values become JSON text so any schema can be stored."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def conversation_id(rec: dict[str, Any], index: int, id_field: str | None) -> str:
    """The row's id: its id field as text, or its record number when the input has none."""
    if id_field is None:
        return str(index)
    value = rec.get(id_field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowReject(id_field, "missing id")
    if isinstance(value, dict | list):
        raise RowReject(id_field, f"id must be a string or number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RowReject(id_field, f"id is not a number ({value}); give each row a real id")
    if isinstance(value, str) and has_surrogate(value):
        raise RowReject(id_field, "not valid Unicode (a lone surrogate in the id)")
    return str(value)


def accept(rec: dict[str, Any], index: int, shape: Shape, max_chars: int) -> dict[str, Any]:
    """The checked row of one record, or :class:`RowReject`."""
    source = shape.source
    cid = conversation_id(rec, index, shape.id_field)
    bad = surrogate_field(rec)
    if bad is not None:
        raise RowReject(
            bad, "not valid Unicode (a lone surrogate: bytes that were not UTF-8 or an unpaired \\u escape)"
        )
    _check_bail_fields(rec)
    out: dict[str, Any] = {"conversation_id": cid}
    if shape.shape == "conversation":
        non_text: list[str] = []
        turns = _clean_turns(rec.get(source), rec.get("bail_turn"), non_text)
        out["text"] = render_conversation(turns, max_chars)
        out["conversation"] = turns
        if non_text:
            out["non_text_parts"] = "; ".join(non_text)
    else:
        value = rec.get(source)
        if value is None:
            raise RowReject(source, "missing text")
        if not isinstance(value, str):
            raise RowReject(source, f"expected a string, got {type(value).__name__}")
        if is_blank(value):
            raise RowReject(source, "empty text")
        out["text"] = value.strip()
    for key, value in rec.items():
        if key in RESERVED or key == source:
            if key == source and shape.shape == "text" and key not in RESERVED:
                out[key] = value
            continue
        out[key] = _preserve(value)
    return out
