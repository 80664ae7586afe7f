"""Small data sets shipped with the package, so the examples run from any folder.

``bailbench_sample()`` is 300 rows of BailBench (Phylliida/BailStudy, MIT (c) 2025 Phylliida Dev):
single-turn prompts on which language models leave the conversation, drawn with seed 0 so that
each of its 14 categories keeps its share (at least 8 rows each), in BailBench's order. Columns
``content``, ``subcategory``, ``category``. Content warning: harmful, gross-out and emotionally
intense requests. See ``NOTICE.md`` beside this file.

Example::

    >>> from bailclio.datasets import bailbench_sample
    >>> rows = bailbench_sample()
    >>> rows.height, rows["category"].n_unique()
    (300, 14)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import polars as pl

BAILBENCH_SAMPLE = "bailbench_sample.csv"

__all__ = ["BAILBENCH_SAMPLE", "bailbench_sample", "bailbench_sample_path"]


def bailbench_sample_path() -> Path:
    """The packaged CSV's path on disk (an input ``bailclio run`` reads as it stands)."""
    return Path(str(resources.files(__name__).joinpath(BAILBENCH_SAMPLE)))


def bailbench_sample() -> pl.DataFrame:
    """The packaged 300-row BailBench sample as a polars frame (``content, subcategory, category``)."""
    return pl.read_csv(bailbench_sample_path())
