"""Entry points: how installed packages add LLM back-ends (``bailclio.backends``) and namers
(``bailclio.namers``) without any change to bailclio. A package declares, in its pyproject::

    [project.entry-points."bailclio.backends"]
    mybackend = "mypackage.backend:make"     # make(llm_config, cache_path, progress) -> LLMBackend

and ``--llm mybackend`` / ``llm.backend = "mybackend"`` then uses it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any


def entry_point_names(group: str) -> list[str]:
    """The names installed under ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_entry_point(group: str, name: str) -> Any | None:
    """The object installed as ``name`` under ``group``, or None."""
    for ep in entry_points(group=group, name=name):
        return ep.load()
    return None
