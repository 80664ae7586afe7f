"""The preflight: before any work, the configured server must answer a 1-token chat request with a
JSON chat completion. Anything else (a closed port, a hung server, an HTML page, JSON of another
shape, an unknown model) is one line and exit status 3 with nothing written or replaced, even with
``--force``; a server still loading its model (503) is waited for, a bounded time, saying so.
Each test starts its own server on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from support.llm_stage_model import make_rows, write_rows
from support.scripted_server import Reply, ScriptedServer, SilentServer, closed_port
from support.small_runs import snapshot

from bailclio.cli import main as cli_main
from bailclio.errors import LLMUnavailable, UserError
from bailclio.llm.server_check import check_server

MODEL = "scripted-model"


@pytest.fixture(scope="module")
def llm_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(tmp_path_factory.mktemp("preflight-input") / "bails.jsonl", make_rows(2))


def run_forced(
    llm_input: Path, dest: Path, url: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    """``bailclio run --force`` into ``dest`` against ``url``: the exit status and stderr."""
    args = [str(llm_input), "--out", str(dest), "--force", "--quiet"]
    code = cli_main(["run", *args, "--llm", "openai", "--base-url", url, "--model", MODEL, *extra])
    return code, capsys.readouterr().err


def assert_kept(dest: Path, before: dict[str, bytes]) -> None:
    assert snapshot(dest) == before
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".good.")]


def config_file(path: Path, **llm: object) -> Path:
    path.write_text("[llm]\n" + "".join(f"{k} = {v!r}\n" for k, v in llm.items()))
    return path


def test_closed_port_is_one_line_exit_3_before_any_work_and_the_good_run_stays(
    llm_input: Path, good_run: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    dest, before = good_run
    url = f"http://127.0.0.1:{closed_port()}/v1"
    t0 = time.monotonic()
    code, err = run_forced(llm_input, dest, url, capsys)
    assert code == 3
    assert len(err.strip().splitlines()) == 1, err
    assert url in err and "refused" in err.lower()
    assert time.monotonic() - t0 < 30  # no retries per row: one check, then out
    assert_kept(dest, before)


def test_hung_server_times_out_in_the_preflight_with_exit_3(
    llm_input: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SilentServer() as srv:
        cfg = config_file(tmp_path / "c.toml", preflight_timeout_s=1.0)
        args = [str(llm_input), "--out", str(tmp_path / "r"), "--quiet", "--config", str(cfg)]
        code = cli_main(["run", *args, "--llm", "openai", "--base-url", srv.base_url, "--model", MODEL])
    err = capsys.readouterr().err
    assert code == 3
    assert srv.base_url in err and "no answer" in err and "within 1 s" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_html_answered_to_everything_fails_the_preflight_and_force_keeps_the_good_run(
    llm_input: Path, good_run: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    dest, before = good_run
    with ScriptedServer() as srv:
        srv.html = True
        code, err = run_forced(llm_input, dest, srv.base_url, capsys)
    assert code == 3
    assert len(err.strip().splitlines()) == 1, err
    assert srv.base_url in err and "not JSON" in err and "text/html" in err
    assert_kept(dest, before)


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "ok"}',
        '{"choices": []}',
        '{"choices": ["pong"]}',
        "[1, 2]",
        '{"choices": [{"text": "x"}]}',
    ],
)
def test_json_that_is_not_a_chat_completion_fails_the_preflight(body: str) -> None:
    with ScriptedServer() as srv:
        srv.preflight_reply = Reply(raw_body=body)
        with pytest.raises(LLMUnavailable, match="not a chat completion") as info:
            check_server(srv.base_url, MODEL, timeout_s=5, wait_s=0)
    assert srv.base_url in str(info.value) and "\n" not in str(info.value)


def test_preflight_is_one_tiny_chat_request_kept_apart_from_the_work() -> None:
    with ScriptedServer(strict_model=True, model=MODEL) as srv:
        check_server(srv.base_url, MODEL, timeout_s=5)
        assert len(srv.preflights) == 1 and srv.preflights[0]["max_tokens"] == 1
        assert srv.requests == []
        with pytest.raises(LLMUnavailable, match="model 'other' answered HTTP 404"):
            check_server(srv.base_url, "other", timeout_s=5)


def test_a_server_asking_for_max_completion_tokens_passes_the_preflight() -> None:
    def wants_completion_tokens(body: dict[str, object]) -> Reply | None:
        if "max_tokens" in body:
            return Reply(
                status=400, error_message="Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens'."
            )
        return None

    with ScriptedServer() as srv:
        srv.preflight_reply = wants_completion_tokens
        check_server(srv.base_url, MODEL, timeout_s=5)
    assert [sorted(k for k in b if k.startswith("max_")) for b in srv.preflights] == [
        ["max_tokens"],
        ["max_completion_tokens"],
    ]


def test_a_server_loading_its_model_is_waited_for_and_the_wait_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with ScriptedServer() as srv, caplog.at_level(logging.WARNING, logger="bailclio"):
        srv.loading(1.5)
        t0 = time.monotonic()
        check_server(srv.base_url, MODEL, timeout_s=5, wait_s=30)
        waited = time.monotonic() - t0
    assert waited >= 1.4
    assert srv.refused_while_loading >= 1 and len(srv.preflights) == 1
    assert "is not ready (HTTP 503: 'Loading model')" in caplog.text and "waiting up to 30 s" in caplog.text


def test_a_server_loading_longer_than_the_wait_is_exit_3_and_the_good_run_stays(
    llm_input: Path,
    good_run: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest, before = good_run
    cfg = config_file(tmp_path / "c.toml", preflight_wait_s=1.0)
    with ScriptedServer() as srv:
        srv.loading(600)
        t0 = time.monotonic()
        code, err = run_forced(llm_input, dest, srv.base_url, capsys, "--config", str(cfg))
        elapsed = time.monotonic() - t0
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 2, err  # the wait said, then the one-line error
    assert "waiting up to 1 s" in lines[0]
    assert "still answered HTTP 503 after waiting 1 s" in lines[1] and "Loading model" in lines[1]
    assert 1.0 <= elapsed < 30
    assert_kept(dest, before)


def test_a_malformed_base_url_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UserError, match=r"llm.base_url: 'http://\[::1' is not a valid URL") as info:
        check_server("http://[::1", MODEL, timeout_s=2, wait_s=0)
    assert not isinstance(info.value, LLMUnavailable) and info.value.exit_code == 2
