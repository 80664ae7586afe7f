"""Progress: each stage says when it starts and how long it took; the embedding bar counts texts
and stays on screen; quiet means quiet, the model's weight loading included."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bailclio.taxonomer import Timer

EMBED_THREE = (
    "import sys\n"
    "from bailclio.config import EmbeddingConfig\n"
    "from bailclio.embeddings.encoder import embed_texts\n"
    "texts = ['one text', 'another text', 'a third']\n"
    "vecs, _ = embed_texts(texts, EmbeddingConfig(), progress=sys.argv[1] == 'on')\n"
    "print(vecs.shape)\n"
)


def embed_in_fresh_process(tmp_path: Path, progress: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAILCLIO_CACHE_DIR": str(tmp_path / progress)}  # nothing cached: the model loads
    return subprocess.run(
        [sys.executable, "-c", EMBED_THREE, progress], capture_output=True, text=True, env=env, timeout=300
    )


def test_stage_lines_give_each_stage_its_time(caplog: pytest.LogCaptureFixture) -> None:
    timer = Timer(verbose=True)
    with caplog.at_level(logging.INFO, logger="bailclio"):
        assert timer.stage("cluster", lambda: 7) == 7
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[bailclio] cluster ..."
    assert lines[1].startswith("[bailclio] cluster done in ") and lines[1].endswith(" s")
    assert timer.timings["cluster"] >= 0


def test_a_silent_timer_still_times(caplog: pytest.LogCaptureFixture) -> None:
    timer = Timer(verbose=False)
    with caplog.at_level(logging.INFO, logger="bailclio"):
        timer.stage("reduce", lambda: None)
    assert not caplog.records and "reduce" in timer.timings


@pytest.mark.slow
def test_quiet_embedding_prints_nothing_not_even_the_weight_loading(tmp_path: Path) -> None:
    quiet = embed_in_fresh_process(tmp_path, "off")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "(3, 384)"
    assert quiet.stderr.strip() == ""


@pytest.mark.slow
def test_the_embedding_bar_counts_texts_and_stays(tmp_path: Path) -> None:
    shown = embed_in_fresh_process(tmp_path, "on")
    assert shown.returncode == 0, shown.stderr
    last = shown.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("[bailclio] embed") and "3/3" in last  # the finished bar is left in place
