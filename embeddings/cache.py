"""On-disk embedding cache: one SQLite file, rows keyed by (model key, sha256 of the text).

A rerun, or a second run over overlapping data, embeds nothing twice. Vectors are stored as
float32 bytes; the file is safe to share between runs (WAL mode, commit per batch).

Example::

    >>> import numpy as np, tempfile, os
    >>> c = EmbeddingCache(os.path.join(tempfile.mkdtemp(), "e.sqlite"))
    >>> c.put("m", ["a"], np.ones((1, 3), dtype=np.float32))
    >>> c.get("m", ["a", "b"])[1]
    [1]
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


class EmbeddingCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, hash TEXT, dim INTEGER, vec BLOB,"
            " PRIMARY KEY (model, hash))"
        )
        self._db.commit()

    def get(self, model: str, texts: list[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """Return ({index: vector} for cached texts, [indices still to embed])."""
        hashes = [text_hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 900):
            chunk = unique[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT hash, vec FROM vectors WHERE model = ? AND hash IN ({marks})",
                [model, *chunk],
            )
            for h, blob in rows:
                found[h] = np.frombuffer(blob, dtype=np.float32)
        hits = {i: found[h] for i, h in enumerate(hashes) if h in found}
        missing = [i for i, h in enumerate(hashes) if h not in found]
        return hits, missing

    def put(self, model: str, texts: list[str], vectors: np.ndarray) -> None:
        vecs = np.asarray(vectors, dtype=np.float32)
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors (model, hash, dim, vec) VALUES (?, ?, ?, ?)",
            [(model, text_hash(t), vecs.shape[1], v.tobytes()) for t, v in zip(texts, vecs, strict=True)],
        )
        self._db.commit()

    def models(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT model FROM vectors")]

    def close(self) -> None:
        self._db.close()
