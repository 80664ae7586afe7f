"""Shared fixtures: small real inputs and one real run, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from support.depth_runs import FixedRuns
from support.explorer_runs import copy_run, transcript_run
from support.vllm_server import serve_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# numba's compiled UMAP/HDBSCAN code is kept between sessions; everything else is per session.
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bailclio" / "numba"),
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Embedding and LLM caches live in a per-session folder, so tests never see stale vectors."""
    if "BAILCLIO_TEST_KEEP_CACHE" not in os.environ:
        os.environ["BAILCLIO_CACHE_DIR"] = str(tmp_path_factory.mktemp("bailclio-cache"))


@pytest.fixture(scope="session")
def bailbench_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 BailBench rows: 30 subcategories x 10 prompts, spread over the categories."""
    df = pl.read_csv(DATA / "bailbench.csv")
    subs = df["subcategory"].unique(maintain_order=True).to_list()[::5][:30]
    sample = df.filter(pl.col("subcategory").is_in(subs))
    path = tmp_path_factory.mktemp("inputs") / "bailbench_300.csv"
    sample.write_csv(path)
    return path


@pytest.fixture(scope="session")
def small_run(bailbench_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run (real MiniLM, UMAP, HDBSCAN) over the 300-row sample."""
    from bailclio.config import Config
    from bailclio.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "small"
    run(bailbench_sample, out, Config(), force=True, progress=False)
    return out


@pytest.fixture(scope="session")
def fixed_runs(tmp_path_factory: pytest.TempPathFactory) -> FixedRuns:
    """Runs of 2, 3 and 5 levels whose tree is fixed by construction (tests/support/depth_runs.py), each
    built on first use in the session."""
    return FixedRuns(tmp_path_factory.getbasetemp() / "fixed_runs")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The /v1 URL of a real vLLM server for a tiny random model (tests/support/vllm_server.py), shared
    by the tests marked vllm so the engine starts once per session."""
    try:
        with serve_tiny_llama(tmp_path_factory.mktemp("vllm")) as base:
            yield base
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The explorer tests' run over chat transcripts (tests/support/explorer_runs.py), built once."""
    return transcript_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def run_dir(base_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``base_run`` at ``tmp_path/runs/r1``; ``tmp_path/runs`` is a runs root."""
    return copy_run(base_run, tmp_path / "runs" / "r1")


@pytest.fixture(scope="session")
def session_server():
    """One scripted OpenAI-compatible server on 127.0.0.1 for the LLM client tests."""
    from support.scripted_server import ScriptedServer

    with ScriptedServer() as srv:
        yield srv


@pytest.fixture()
def server(session_server):
    """The session's scripted server, idle and reset to its defaults (no queue, handler, latency)."""
    assert session_server.wait_idle(5)
    session_server.reset()
    session_server.handler = None
    session_server.latency_ms = 0.0
    return session_server
