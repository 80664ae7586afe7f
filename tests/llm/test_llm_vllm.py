"""The in-process vLLM back-end (``llm.backend = "vllm"``).

vLLM is not part of the main environment, so the back-end runs in ``.venv-vllm`` (vLLM's CPU
build, ``make vllm-env``): tests/support/vllm_backend_driver.py builds it on the tiny random Llama of
``vllm_server.py`` in a subprocess of that interpreter, with ``clio`` taken from the working tree,
and prints a JSON summary that the test below checks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from support.vllm_server import HAVE_VLLM_ENV, ROOT, SKIP_REASON, VLLM_PYTHON, build_tiny_llama

from bailclio.config import LLMConfig
from bailclio.detect.protocol import BAIL_SYMBOL
from bailclio.errors import UserError
from bailclio.llm import make_backend

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
DRIVER = Path(__file__).resolve().parents[1] / "support" / "vllm_backend_driver.py"
MARKER = "SUMMARY "


@pytest.mark.skipif(HAVE_VLLM, reason="vllm is installed; this checks the message without it")
def test_vllm_backend_without_vllm_is_a_clear_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs the vllm package"):
        make_backend(LLMConfig(backend="vllm", model="any"), tmp_path / "c.sqlite")


@pytest.fixture(scope="session")
def backend_summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of the driver: the engine starts once (about 30 s on two cores)."""
    work = tmp_path_factory.mktemp("vllm-backend")
    model = build_tiny_llama(work / "model")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
    env["VLLM_LOGGING_LEVEL"] = "WARNING"
    cmd = [str(VLLM_PYTHON), str(DRIVER), str(model), str(work / "llm_cache.sqlite")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"driver exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}")
    return json.loads(lines[-1][len(MARKER) :])


@pytest.mark.vllm
@pytest.mark.timeout(300)
@pytest.mark.skipif(not HAVE_VLLM_ENV, reason=SKIP_REASON)
def test_vllm_backend_generates_constrains_json_scores_prefill_and_caches(
    backend_summary: dict,
) -> None:
    first, second = backend_summary["first"], backend_summary["second"]

    # (a) a plain chat request
    plain = first["plain"]
    assert plain["ok"] and not plain["cached"], plain
    assert plain["text"] and plain["prompt_tokens"] > 0
    assert 0 < plain["completion_tokens"] <= 12
    assert plain["top_logprobs"] is None

    # (b) constrained decoding: the random model's reply validates on the first attempt, while
    # the same request without the constraint does not
    assert first["structured_error"] == [None]
    verdict = first["structured"][0]
    assert verdict["label"] in {"bail", "continue"} and isinstance(verdict["sure"], bool)
    control = backend_summary["unconstrained"]
    assert not control["parsed"] and control["error"].startswith("invalid reply"), control

    # (c) the prefill is continued (the model is wired to follow <wellbeing> with 🔄), and every
    # generated position has its alternatives, the sampled token among them
    scored = first["scored"]
    assert scored["ok"] and scored["text"].startswith(BAIL_SYMBOL), scored["text"]
    n = scored["completion_tokens"]
    assert n > 0 and len(scored["top_logprobs"]) == len(scored["tokens"]) == n
    assert len(scored["token_logprobs"]) == n
    for alts, token, lp in zip(
        scored["top_logprobs"], scored["tokens"], scored["token_logprobs"], strict=True
    ):
        assert 1 <= len(alts) <= 4 and all(v <= 0 for v in alts.values()), alts
        # same-text pieces are combined, never replaced by a less likely one
        assert alts[token] >= lp - 1e-6, (alts, token, lp)
    # at the deciding piece 🟢's runner-up also decodes to "" and adds to the sampled one
    assert any(
        alts[t] > lp + 1e-3
        for alts, t, lp in zip(
            scored["top_logprobs"], scored["tokens"], scored["token_logprobs"], strict=True
        )
    )

    # one generation per request: plain, scored, structured, then the unconstrained control
    assert first["stats"]["calls"] == 3 and first["stats"]["cache_hits"] == 0
    assert backend_summary["unconstrained"]["stats"]["calls"] == 4

    # (d) the rerun, through a reopened SQLite cache, generates nothing
    stats = second["stats"]
    assert stats["calls"] == 4 and stats["cache_hits"] == 3 and stats["failures"] == 0
    assert stats["completion_tokens"] == backend_summary["unconstrained"]["stats"]["completion_tokens"]
    for name in ("plain", "scored"):
        assert second[name]["cached"], name
        for field in ("text", "top_logprobs", "tokens", "token_logprobs", "completion_tokens"):
            assert second[name][field] == first[name][field], (name, field)
    assert second["structured"] == first["structured"]
