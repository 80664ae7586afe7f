"""Where bailclio keeps its caches: the one place that reads ``BAILCLIO_CACHE_DIR``.

``cache_root()`` is ``$BAILCLIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/bailclio``, else
``~/.cache/bailclio``. The embedding cache lives in ``embeddings/``, the LLM call caches in
``llm/`` and numba's compiled code in ``numba/`` below it.

    >>> import os
    >>> os.environ["BAILCLIO_CACHE_DIR"] = "/tmp/somewhere"; str(cache_root())
    '/tmp/somewhere'
    >>> str(cache_root("llm"))
    '/tmp/somewhere/llm'
    >>> del os.environ["BAILCLIO_CACHE_DIR"]
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
