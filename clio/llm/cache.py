"""On-disk cache of completed LLM calls: SQLite in WAL mode, one row per call.

Each successful call is committed as soon as it completes, so a killed run loses at most the calls
that were in flight; a rerun with the same requests makes no calls for the rows already present.
Failures are never stored, so a rerun retries them.

    >>> import tempfile, os
    >>> from bailclio.llm.base import ChatRequest, ChatResult, Choice
    >>> path = os.path.join(tempfile.mkdtemp(), "c.sqlite")
    >>> cache = LLMCache(path)
    >>> key = ChatRequest(messages=[{"role": "user", "content": "hi"}]).cache_key("openai", "m")
    >>> cache.put(key, ChatResult(choices=[Choice(text="hello")], prompt_tokens=3))
    >>> cache.get(key).text, cache.get(key).cached
    ('hello', True)
    >>> cache.close()
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bailclio.llm.base import ChatResult, Choice, ToolCall

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def result_to_json(result: ChatResult) -> str:
    data = asdict(result)
    data.pop("cached", None)
    data.pop("tag", None)
    data.pop("error", None)
    return json.dumps(data, ensure_ascii=False)


def result_from_json(blob: str) -> ChatResult:
    data: dict[str, Any] = json.loads(blob)
    choices = []
    for c in data.get("choices", []):
        c = dict(c)
        c["tool_calls"] = [ToolCall(**tc) for tc in c.get("tool_calls") or []]
        known = Choice.__dataclass_fields__
        choices.append(Choice(**{k: v for k, v in c.items() if k in known}))
    return ChatResult(
        choices=choices,
        prompt_tokens=int(data.get("prompt_tokens", 0)),
        completion_tokens=int(data.get("completion_tokens", 0)),
        cached=True,
        prompt_logprobs=data.get("prompt_logprobs"),
    )


class LLMCache:
    """Key -> completed :class:`ChatResult`, safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get(self, key: str) -> ChatResult | None:
        with self._lock:
            row = self._conn.execute("SELECT result FROM llm_cache WHERE key = ?", (key,)).fetchone()
        return result_from_json(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, ChatResult]:
        out: dict[str, ChatResult] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, result FROM llm_cache WHERE key IN ({marks})", chunk
                ).fetchall()
                out.update({k: result_from_json(r) for k, r in rows})
        return out

    def put(self, key: str, result: ChatResult) -> None:
        """Store a successful result (committed immediately); failures are ignored."""
        if result.error is not None:
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_cache (key, result, created) VALUES (?, ?, ?)",
                (key, result_to_json(result), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
