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


# Settings that make the numerical libraries take the same code path on every x86-64 CPU with
# AVX2 and FMA, whatever else it has (AVX-512 included) and however many threads it runs:
# MKL's conditional numerical reproducibility (torch's matrix products), oneDNN and torch's own
# kernels capped at AVX2, OpenBLAS's Sandybridge kernels (numpy's products: the kNN graph,
# UMAP's spectral start; its Haswell kernels give other sums on another thread count) and numba
# code compiled for a Haswell target (UMAP). ``bailclio`` sets them
# (where unset) before any of these libraries loads; ``BAILCLIO_NATIVE_NUMERICS=1`` leaves the
# libraries to choose. bench/reproducibility.py measures what they change.
PORTABLE_NUMERICS = {
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "NUMBA_CPU_NAME": "haswell",
}
NATIVE_NUMERICS_VAR = "BAILCLIO_NATIVE_NUMERICS"
_NEEDED_FLAGS = ("avx2", "fma", "bmi2", "f16c")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def portable_numerics(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings of :data:`PORTABLE_NUMERICS` this machine can take and the environment has
    not set already (none on a CPU without AVX2/FMA, off x86-64, or with
    ``BAILCLIO_NATIVE_NUMERICS=1``)."""
    import os

    env = os.environ if environ is None else environ
    if env.get(NATIVE_NUMERICS_VAR, "") not in ("", "0"):
        return {}
    if platform.machine().lower() not in ("x86_64", "amd64") or not set(_NEEDED_FLAGS) <= cpu_flags():
        return {}
    return {k: v for k, v in PORTABLE_NUMERICS.items() if k not in env}


def numeric_settings() -> dict[str, object]:
    """What decides a run's floating-point results on this machine, for the manifest: the CPU,
    the settings of :data:`PORTABLE_NUMERICS` in effect, thread counts and torch's kernels."""
    import os
    import sys

    out: dict[str, object] = {
        "cpu": _cpu_model(),
        "avx512": "avx512f" in cpu_flags(),
        "env": {k: os.environ[k] for k in (*PORTABLE_NUMERICS, NATIVE_NUMERICS_VAR) if k in os.environ},
        "cpu_count": os.cpu_count(),
    }
    if "torch" in sys.modules:  # never imported just to describe it
        torch = sys.modules["torch"]
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
