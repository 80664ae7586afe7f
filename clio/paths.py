"""Where bailclio keeps its caches: the one place that reads ``BAILCLIO_CACHE_DIR``.

``cache_root()`` is ``$BAILCLIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/bailclio``, else
``~/.cache/bailclio``. The embedding cache lives in ``embeddings/``, the LLM call caches in
``llm/`` and numba's compiled code in ``numba/`` below it.

    >>> cache_root("llm").name, cache_root("llm").parent == cache_root()
    ('llm', True)
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(*parts: str) -> Path:
    """The cache folder (or a path below it); nothing is created."""
    root = os.environ.get("BAILCLIO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bailclio"
    )
    return Path(root, *parts)
