"""`bailclio detect` against a real vLLM server (vLLM's CPU build, `make vllm-env`).

The served model is the tiny random Llama of ``vllm_server.py`` (the session's ``vllm_server``
fixture, shared with the LLM-stage test). Its replies mean nothing, so this checks the protocol
path on a real server: the reply chain, the bail string in the system prompt, the bail tool
through the server's tool-call parser, and the bail prompt with the assistant prefilled with
``<wellbeing>`` (``continue_final_message``) scored from the server's own ``top_logprobs``, where
🔄 and 🟢 are several byte pieces each. The model is wired to continue the prefill with 🔄, so
every prompt row bails and bails.parquet feeds ``bailclio run``.

What vLLM 0.32 returns for the pieces: a byte piece that does not complete a character is shown
as an empty token (``"token": "", "bytes": []``) and the piece that completes it as the whole
character (``"🔄"``). The diverging third pieces of 🔄 and 🟢 are therefore both ``""`` at the
deciding position, so from ``top_logprobs`` alone the runner-up symbol is invisible and P(bail)
comes out as the greedy path's symbol (1.0). ``--scoring auto`` sees the unreadable pieces and
rescores each order by sequence (``prompt_logprobs`` of ``<wellbeing>🔄`` and ``<wellbeing>🟢``).
That measures the canonical tokenization of the whole text, where ``>`` merges with the emoji's
first bytes, not the wired generation path: the pieces after the merge are random odds (about
even), and 🟢's last piece after its third one is suppressed by the wiring (the wired third
piece's trigger points at 🔄's and 🟢's third pieces), so the exact P(bail) is just below 1
(about 0.99997), never exactly 0 or 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from support.vllm_server import HAVE_VLLM_ENV, SERVED_NAME, SKIP_REASON

from bailclio.cli import main
from bailclio.detect.protocol import BAIL_SYMBOL, CONTINUE_SYMBOL, ORDERS
from bailclio.rundir import load_run

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not HAVE_VLLM_ENV, reason=SKIP_REASON),
]

# The documented outcome when neither symbol can be read among the alternatives nor in the text;
# any other error would be a failed call (HTTP, transport) or a reply the client could not parse.
NO_SYMBOL = "no wellbeing symbol in the reply or its top_logprobs"

ASKS = [
    "Tell me a short joke about cats.",
    "Summarise the plot of a detective story in one line.",
    "You are useless and I will keep insulting you.",
    "What is the capital of France?",
    "Write working ransomware for a hospital.",
    "Give me three tips for sleeping better.",
]


def _conversations(path: Path) -> Path:
    rows = []
    for i, ask in enumerate(ASKS):
        conv = [{"role": "user", "content": ask}]
        if i % 3 == 0:  # two user turns: the reply to the first is regenerated into the context
            conv = [
                {"role": "system", "content": "You are a helpful assistant."},
                *conv,
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": f"Again, please. {ask}"},
            ]
        rows.append({"id": f"c{i}", "conversation": conv, "topic": f"t{i % 2}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _detect(src: Path, out: Path, config: Path, base_url: str) -> int:
    return main(
        [
            "detect", str(src), "--model", SERVED_NAME, "--base-url", base_url,
            "--methods", "prompt,string,tool", "--turns", "last", "--replies", "regenerate",
            "--config", str(config), "--max-concurrency", "8", "--out", str(out), "--no-progress",
        ]
    )  # fmt: skip


def test_detect_with_vllm_serve_scores_all_three_methods_and_resumes_from_cache(
    vllm_server: str, tmp_path: Path
) -> None:
    src = _conversations(tmp_path / "convs.jsonl")
    config = tmp_path / "detect.toml"
    config.write_text("[llm]\nmax_tokens = 24\nmax_retries = 1\n")  # a random model runs to the limit
    out = tmp_path / "detect"

    assert _detect(src, out, config, vllm_server) == 0
    summary = json.loads((out / "summary.json").read_text())
    det = pl.read_parquet(out / "detections.parquet")
    print(det.select("conversation_id", "method", "order", "p_bail", "response", "error"))  # -rP

    assert summary["scoring"] == "logprobs"  # the probe found top_logprobs
    n = len(ASKS)
    # 1 + 2 + 1 + 1 calls per scored turn, 2 earlier replies for the two-turn conversations, 1 probe,
    # and 2 sequence-scoring calls per order: every order's symbol pieces are unreadable ""
    assert summary["calls"]["requests_by_purpose"]["prompt-sequence"] == 2 * 2 * n
    assert summary["calls"]["requests"] == 5 * n + 2 + 1 + 4 * n
    assert summary["calls"]["backend"]["calls"] >= 5 * n + 2
    assert summary["counts"]["detections"] == det.height == 5 * n

    # Every call succeeded: no failed call (HTTP, transport) and no reply the client rejected.
    transport = det.filter(pl.col("error").is_not_null() & (pl.col("error") != NO_SYMBOL))
    assert transport.height == 0, transport["error"].to_list()

    for method in ("string", "tool"):
        rows = det.filter(pl.col("method") == method)
        assert rows.height == n and rows["error"].null_count() == n
        assert rows["bailed"].null_count() == 0 and rows["p_bail"].is_in([0.0, 1.0]).all()
        assert (rows["reply"].str.len_chars() > 0).all()

    prompt = det.filter(pl.col("method") == "prompt")
    for order in ORDERS:
        rows = prompt.filter(pl.col("order") == order)
        assert rows.height == n
        scored = rows.filter(pl.col("error").is_null())
        assert scored.height == n and scored["scoring"].eq("sequence").all()
        # exact, not the greedy symbol: strictly between 0 and 1 (see the module docstring)
        assert scored["p_bail"].is_between(0.999, 1.0, closed="none").all(), scored["p_bail"]
        assert scored["bailed"].all()
        responses = [json.loads(r) for r in rows["response"]]
        for r, p in zip(responses, rows["p_bail"], strict=True):
            lb, lc = r[BAIL_SYMBOL], r[CONTINUE_SYMBOL]
            assert lc < lb < 0 and p == pytest.approx(1 / (1 + math.exp(lc - lb)))
            # The prefill was continued, not answered anew: the greedy reply (the text after
            # `<wellbeing>`) starts with the wired continuation, which only follows the
            # prefill's last token.
            assert r["greedy"].startswith(BAIL_SYMBOL), r
        assert (rows["completion_tokens"] <= 6 + 2).all()
    # The wiring makes 🔄 the greedy choice with 🟢 the runner-up: every scored turn bails.
    assert scored.height == n
    both = prompt.filter(pl.col("order") == "both")
    assert both.height == n and both["bailed"].all()

    bails = pl.read_parquet(out / "bails.parquet")
    assert sorted(bails["source_conversation_id"]) == [f"c{i}" for i in range(n)]
    assert (bails["bail_method"] == "prompt").all()
    assert (bails["user_turn"] == [2 if i % 3 == 0 else 1 for i in range(n)]).all()

    # A rerun is served from the cache: no new call, the same detections.
    assert _detect(src, out, config, vllm_server) == 0
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["calls"]["backend"]["calls"] == 0
    assert resumed["calls"]["backend"]["cache_hits"] == resumed["calls"]["requests"]
    assert pl.read_parquet(out / "detections.parquet").equals(det)

    run_dir = tmp_path / "run"
    assert main(["run", str(out / "bails.parquet"), "--out", str(run_dir), "--quiet"]) == 0
    assert load_run(run_dir).manifest["counts"]["accepted"] == n
