"""The examples in the docstrings run: every module of the package is run through doctest
(examples that need a model, a server or a finished run are marked ``+SKIP`` where they stand)."""

from __future__ import annotations

import doctest
import importlib
import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from test_layers import modules

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"bailclio.explorer.app"}  # the Streamlit page script runs the page when imported


@pytest.mark.parametrize("name", sorted(set(modules()) - SCRIPTS))
def test_the_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files such as data/bailbench.csv
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional back-end's library (vllm)
        pytest.skip(f"{name} needs {exc.name}")
    out = io.StringIO()
    with redirect_stdout(out):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, out.getvalue()
