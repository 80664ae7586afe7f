"""bailclio: discover the taxonomy of situations in which language models leave a conversation.

The Python API (imported on first use, so ``import bailclio`` stays light)::

    from bailclio import Taxonomer
    tx = Taxonomer().fit(texts)          # a list of texts or transcripts, or a polars frame
    tx.taxonomy_, tx.assignments_        # the nodes; one row per conversation
    tx.save("runs/mine")                 # a run directory for the CLI and the explorer
    Taxonomer.load("runs/mine").transform(new_texts)

Stages are swappable (:mod:`bailclio.stages`, defaults in :mod:`bailclio.components`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bailclio.config import Config, load_config
    from bailclio.pipeline import run
    from bailclio.rundir import load_run
    from bailclio.taxonomer import Taxonomer

__all__ = ["Config", "Taxonomer", "__version__", "load_config", "load_run", "run"]

_LAZY = {
    "Taxonomer": "bailclio.taxonomer",
    "Config": "bailclio.config",
    "load_config": "bailclio.config",
    "run": "bailclio.pipeline",
    "load_run": "bailclio.rundir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bailclio' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
