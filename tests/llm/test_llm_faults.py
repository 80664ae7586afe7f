"""LLM servers that fail the way real ones do: a closed port, a hung server, a slow first byte,
truncated replies, 429 with Retry-After, a server dying mid-run. Each test starts its own server
(never the session's), so no scripted state leaks into other tests.

What must hold: an unreachable server is one line and exit status 3 before any work; a server
that keeps failing during the LLM stage trips the circuit breaker (stopped early, completed calls
cached, exit 3, the resume command printed); a good run at ``--out`` is never replaced by a
degraded one; transient failures (one truncated reply, 429s) are retried and never trip it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support.llm_stage_model import analyst, make_rows, write_rows
from support.scripted_server import Reply, ScriptedServer
from support.small_runs import snapshot

from bailclio.cli import main as cli_main
from bailclio.errors import LLMUnavailable
from bailclio.llm.base import ChatRequest
from bailclio.llm.cache import LLMCache
from bailclio.llm.openai_backend import OpenAIBackend

pytestmark = pytest.mark.timeout(240)
MODEL = "scripted-model"


@pytest.fixture(scope="module")
def llm_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(tmp_path_factory.mktemp("faults-input") / "bails.jsonl", make_rows(6))


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], *, config: Path | None = None
) -> tuple[int, str, str]:
    extra = ["--config", str(config)] if config else []
    code = cli_main(["run", *args, "--quiet", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def toml(path: Path, **llm: Any) -> Path:
    lines = ["[llm]"] + [f"{k} = {json.dumps(v)}" for k, v in llm.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8) for i in range(n)
    ]


# --------------------------------------------------------------------------- circuit breaker


def test_slow_first_byte_beyond_the_timeout_trips_the_breaker_quickly(tmp_path: Path) -> None:
    with ScriptedServer(latency_ms=3000) as srv:
        be = OpenAIBackend(
            MODEL, base_url=srv.base_url, timeout_s=0.3, max_retries=3, backoff_base_s=0.01,
            breaker_window=4, max_concurrency=4, cache=tmp_path / "c.sqlite", progress=False,
        )  # fmt: skip
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable) as info:
            be.generate(requests(40))
        assert time.monotonic() - t0 < 20
        assert "timeout" in str(info.value) and srv.base_url in str(info.value)
        assert str(tmp_path / "c.sqlite") in str(info.value)
        assert len(srv.requests) < 40  # stopped early, not 4 attempts x 40 rows
        be.close()


def test_slow_first_byte_within_the_timeout_is_just_slow(tmp_path: Path) -> None:
    with ScriptedServer(latency_ms=300) as srv:
        be = OpenAIBackend(MODEL, base_url=srv.base_url, timeout_s=10, breaker_window=4, progress=False)
        out = be.generate(requests(6))
        assert all(r.ok for r in out) and be.outage is None


def test_a_few_truncated_replies_are_retried_without_tripping(tmp_path: Path) -> None:
    with ScriptedServer() as srv:
        srv.push(Reply(text="x", truncate=True), Reply(text="x", truncate=True))
        be = OpenAIBackend(
            MODEL, base_url=srv.base_url, backoff_base_s=0.01, max_concurrency=1, progress=False
        )
        out = be.generate(requests(10))
        assert all(r.ok for r in out), [r.error for r in out]
        assert be.stats()["retries"] == 2 and be.outage is None


def test_429_with_retry_after_is_honoured_and_never_trips_the_breaker() -> None:
    with ScriptedServer() as srv:
        srv.push(*[Reply(status=429, retry_after=0.01) for _ in range(12)])
        srv.push(Reply(status=429, retry_after=0.6))
        be = OpenAIBackend(
            MODEL, base_url=srv.base_url, max_retries=20, backoff_base_s=0.001, breaker_window=4,
            max_concurrency=1, progress=False,
        )  # fmt: skip
        t0 = time.monotonic()
        out = be.generate(requests(3))
        assert all(r.ok for r in out), [r.error for r in out]
        assert time.monotonic() - t0 >= 0.6  # the long Retry-After was waited for
        assert be.outage is None and be.stats()["retries"] == 13


def test_server_dying_mid_run_stops_early_keeps_the_cache_and_the_good_run_then_resumes(
    llm_input: Path,
    good_run: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest, before = good_run
    cache = tmp_path / "llm.sqlite"
    with ScriptedServer(handler=analyst, model=MODEL) as srv:
        port = srv.port
        srv.die_after(15)
        args = [str(llm_input), "--out", str(dest), "--force", "--llm", "openai", "--base-url", srv.base_url,
                "--model", MODEL, "--llm-cache", str(cache), "--max-concurrency", "4"]  # fmt: skip
        t0 = time.monotonic()
        code, _, err = run_cli(args, capsys)
        took = time.monotonic() - t0
    assert code == 3, err
    line = err.strip().splitlines()[-1]
    assert "is failing" in line and "connection error" in line and str(cache) in line
    assert "resume with: bailclio run" in line and "--force" in line
    assert took < 60
    assert snapshot(dest) == before  # the good run was not replaced by a degraded one
    kept = LLMCache(cache)
    n_cached = len(kept)
    kept.close()
    assert 0 < n_cached <= 15

    with ScriptedServer(handler=analyst, model=MODEL, port=port):  # the server is back
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        manifest = json.loads((dest / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["incomplete"] == []
        assert manifest["llm"]["stages"]["facets"]["cache_hits"] >= n_cached  # resumed, not redone
        assert manifest["counts"]["accepted"] == len(make_rows(6))
