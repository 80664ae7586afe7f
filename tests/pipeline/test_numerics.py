"""The portable numeric settings the command line applies before the numerical libraries load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bailclio.provenance import PORTABLE_NUMERICS, cpu_flags, numeric_settings, portable_numerics

AVX2_X86 = {"avx2", "fma", "bmi2", "f16c"} <= cpu_flags()


PROBE = """
import json, os, sys
from bailclio.cli import pin_numerics
pin_numerics()
keys = json.loads(sys.argv[1])
loaded = [m for m in ("numpy", "torch", "numba") if m in sys.modules]
print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "loaded": loaded}))
"""


def _pinned_env(env: dict[str, str]) -> dict:
    argv = [sys.executable, "-c", PROBE, json.dumps(list(PORTABLE_NUMERICS))]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not AVX2_X86, reason="the settings apply to x86-64 CPUs with AVX2 and FMA")
def test_the_cli_pins_unset_settings_before_numpy_torch_or_numba_load() -> None:
    base = {
        k: v for k, v in os.environ.items() if k not in PORTABLE_NUMERICS and k != "BAILCLIO_NATIVE_NUMERICS"
    }
    got = _pinned_env(base)
    assert got["env"] == PORTABLE_NUMERICS and got["loaded"] == []
    mine = _pinned_env({**base, "OPENBLAS_CORETYPE": "SkylakeX"})  # a choice already made is kept
    assert mine["env"] == {**PORTABLE_NUMERICS, "OPENBLAS_CORETYPE": "SkylakeX"}
    native = _pinned_env({**base, "BAILCLIO_NATIVE_NUMERICS": "1"})
    assert native["env"] == dict.fromkeys(PORTABLE_NUMERICS)


def test_settings_are_only_offered_where_the_cpu_takes_them() -> None:
    assert portable_numerics({"BAILCLIO_NATIVE_NUMERICS": "1"}) == {}
    offered = portable_numerics({})
    assert offered == (PORTABLE_NUMERICS if AVX2_X86 else {})
    assert portable_numerics(dict(PORTABLE_NUMERICS)) == {}


def test_the_manifest_records_what_decides_the_numbers(small_run) -> None:
    m = json.loads((small_run / "manifest.json").read_text())
    platform = m["platform"]
    assert {"machine", "system", "cpu", "avx512", "env", "cpu_count"} <= set(platform)
    assert platform["torch_cpu_capability"]  # torch was loaded for the embeddings
    assert set(numeric_settings()) >= {"cpu", "env"}
