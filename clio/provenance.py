"""What a manifest records about its inputs and software: file hashes and package versions."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from bailclio import __version__

# Packages whose versions a run's manifest records (those not installed are left out).
VERSIONED_PACKAGES = (
    "numpy",
    "polars",
    "pyarrow",
    "scikit-learn",
    "umap-learn",
    "pynndescent",
    "hdbscan",
    "numba",
    "sentence-transformers",
    "transformers",
    "torch",
    "openai",
    "streamlit",
)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Python, bailclio and each installed package's version; missing packages are left out."""
    out = {"python": platform.python_version(), "bailclio": __version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
