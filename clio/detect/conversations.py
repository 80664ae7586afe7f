"""Conversations as detect sees them: a prefix (system prompt) and user turns with their replies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bailclio.detect import scoring
from bailclio.errors import UserError

CHAT_ROLES = ("system", "user", "assistant")


@dataclass
class Turn:
    user: dict[str, str]
    replies: list[dict[str, str]]  # the existing messages after the user message


@dataclass
class Conversation:
    cid: str
    prefix: list[dict[str, str]]  # system prompt and anything before the first user message
    turns: list[Turn]
    columns: dict[str, Any]  # preserved input columns
    dropped_messages: int = 0
    fixed: list[dict[str, str]] = field(default_factory=list)  # --prefix messages

    def opening(self, with_fixed: bool = True) -> list[dict[str, str]]:
        """The messages before the first user turn: the leading system messages, then the
        ``--prefix`` messages (when ``with_fixed``), then the rest of the prefix."""
        lead = 0
        while lead < len(self.prefix) and self.prefix[lead]["role"] == "system":
            lead += 1
        fixed = self.fixed if with_fixed else []
        return [*self.prefix[:lead], *fixed, *self.prefix[lead:]]

    def scored(self, which: str) -> list[int]:
        if not self.turns:
            return []
        return list(range(len(self.turns))) if which == "all" else [len(self.turns) - 1]


def conversations_from_frame(frame: pl.DataFrame, id_column: str | None = None) -> list[Conversation]:
    """Split each loaded row into a prefix and user turns; single texts become one user turn.

    The input's id column is not carried over (the id is ``conversation_id``, and bails.parquet
    keeps it as ``source_conversation_id``), so that reading bails.parquet picks its own ids.
    """
    reserved = {"conversation_id", "conversation", "text", "source_line", "id", id_column}
    keep_cols = [c for c in frame.columns if c not in reserved]
    out = []
    for row in frame.iter_rows(named=True):
        msgs = row.get("conversation")
        if msgs is None:
            msgs = [{"role": "user", "content": row["text"]}]
        prefix: list[dict[str, str]] = []
        turns: list[Turn] = []
        dropped = 0
        for m in msgs:
            role = str(m.get("role") or "").lower()
            content = m.get("content") or ""
            if role not in CHAT_ROLES:
                dropped += 1
                continue
            msg = {"role": role, "content": content}
            if role == "user":
                turns.append(Turn(user=msg, replies=[]))
            elif turns:
                turns[-1].replies.append(msg)
            else:
                prefix.append(msg)
        columns = {c: row[c] for c in keep_cols}
        if "source_line" in frame.columns:
            columns["input_line"] = row["source_line"]
        out.append(Conversation(str(row["conversation_id"]), prefix, turns, columns, dropped))
    return out


def visible(text: str) -> str:
    return scoring.strip_thinking(text)


@dataclass
class Cell:
    """One scored (conversation, turn)."""

    conv: Conversation
    k: int  # 0-based user turn index
    reply_msgs: list[dict[str, str]] | None = None  # the reply the prompt method scores
    reply_raw: str | None = None
    context_error: str | None = None  # a reply to an earlier turn failed (regenerate)
    reply_error: str | None = None  # the reply the prompt method scores failed


PREFIX_ROLES = ("user", "assistant")


def read_prefix(path: str | Path) -> list[dict[str, str]]:
    """The ``--prefix`` messages: a JSON list of ``{"role", "content"}`` objects (or an object
    with a ``messages`` list), or JSONL with one message per line; roles user and assistant.

    A conversation's own system prompt stays first; these messages follow it.
    """
    src = Path(path)
    if not src.is_file():
        raise UserError(f"--prefix {src}: no such file")
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--prefix {src}: cannot read ({exc})") from exc
    try:
        if src.suffix.lower() == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--prefix {src}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(data, dict):
        data = data.get("messages")
    if not isinstance(data, list) or not data:
        raise UserError(f"--prefix {src}: expected a non-empty list of messages")
    out = []
    for i, m in enumerate(data, 1):
        role = m.get("role") if isinstance(m, dict) else None
        content = m.get("content") if isinstance(m, dict) else None
        if role not in PREFIX_ROLES:
            raise UserError(f"--prefix {src}: message {i}: role must be user or assistant, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise UserError(f"--prefix {src}: message {i}: content must be non-empty text")
        out.append({"role": role, "content": content})
    return out
