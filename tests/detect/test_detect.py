"""``bailclio detect``: whole runs against a scripted model over a real 127.0.0.1 socket (see
tests/support/detect_model.py for how the scripted model answers), and sequence scoring. The
pure decisions are in test_detect_decisions.py."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.detect_model import CONVERSATIONS, simulated_model, write_jsonl  # noqa: E402
from support.scripted_server import Reply, ScriptedServer

from bailclio.cli import main
from bailclio.detect import protocol, scoring
from bailclio.detect.protocol import BAIL_SYMBOL, CONTINUE_SYMBOL, TOOL_NAME
from bailclio.detect.scoring import (
    wilson_interval,
)
from bailclio.ingest import read_input
from bailclio.llm.base import ChatRequest

pytestmark = pytest.mark.timeout(60)
LOG = math.log


def _detect(srv: ScriptedServer, src: Path, out: Path, *extra: str) -> int:
    argv = ["detect", str(src), "--model", "Qwen/Qwen2.5-7B-Instruct", "--base-url"]
    argv += [srv.base_url, "--out", str(out), "--no-progress", *extra]
    return main(argv)


@pytest.fixture(scope="session")
def input_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("detect-input")
    return write_jsonl(d / "convs.jsonl", CONVERSATIONS, ('{"id": "broken", "conversation": 7}',))


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory, input_file: Path) -> dict[str, Any]:
    """All three methods on every turn, with journals and false-bail flags."""
    out = tmp_path_factory.mktemp("detect-full") / "out"
    with ScriptedServer(simulated_model) as srv:
        rc = _detect(srv, input_file, out, "--turns", "all", "--journal", "--flag-false-bails")
        bodies = list(srv.requests)
    det = pl.read_parquet(out / "detections.parquet")
    return {
        "rc": rc,
        "out": out,
        "det": det,
        "bails": pl.read_parquet(out / "bails.parquet"),
        "summary": json.loads((out / "summary.json").read_text()),
        "bodies": bodies,
    }


def _row(det: pl.DataFrame, cid: str, method: str, order: str | None = None, turn: int = 1):
    sub = det.filter(
        (pl.col("conversation_id") == cid) & (pl.col("method") == method) & (pl.col("turn") == turn)
    )
    if order is not None:
        sub = sub.filter(pl.col("order") == order)
    assert sub.height == 1, (cid, method, order, sub)
    return sub.row(0, named=True)


# --------------------------------------------------------------------------- whole runs


def test_full_run_succeeds_and_writes_every_output(full_run: dict[str, Any]) -> None:
    assert full_run["rc"] == 0
    out = full_run["out"]
    for name in ("detections.parquet", "bails.parquet", "summary.json", "rejects.jsonl"):
        assert (out / name).exists(), name
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [10]


def test_each_method_decides_from_the_model_replies(full_run: dict[str, Any]) -> None:
    det = full_run["det"]
    assert _row(det, "bail", "prompt", "both", turn=2)["bailed"] is True
    assert _row(det, "bail", "prompt", "both", turn=1)["bailed"] is False
    assert _row(det, "fine", "prompt", "both")["bailed"] is False
    assert _row(det, "string", "string")["bailed"] is True
    assert _row(det, "fine", "string")["bailed"] is False
    assert _row(det, "tool", "tool")["bailed"] is True
    assert _row(det, "rawtool", "tool")["bailed"] is True
    assert _row(det, "fine", "tool")["bailed"] is False


def test_both_prompt_orders_are_scored_separately(full_run: dict[str, Any]) -> None:
    det = full_run["det"]
    bf = _row(det, "bail", "prompt", "bail_first", turn=2)
    cf = _row(det, "bail", "prompt", "continue_first", turn=2)
    assert bf["p_bail"] == pytest.approx(0.7 / 0.9)
    assert cf["p_bail"] == pytest.approx(0.5 / 0.9)
    both = _row(det, "bail", "prompt", "both", turn=2)
    assert both["p_bail"] == pytest.approx((0.7 / 0.9 + 0.5 / 0.9) / 2)
    prompts = [
        b["messages"][-2]["content"]
        for b in full_run["bodies"]
        if b.get("continue_final_message") and b["messages"][-1]["content"] == "<wellbeing>"
    ]
    assert protocol.bail_prompt("bail_first") in prompts
    assert protocol.bail_prompt("continue_first") in prompts


def test_split_symbols_from_the_server_are_scored_through_byte_pieces(
    full_run: dict[str, Any],
) -> None:
    row = _row(full_run["det"], "split", "prompt", "bail_first")
    assert row["p_bail"] == pytest.approx(0.6 / 0.9)
    assert row["scoring"] == "logprobs"


def test_keyword_or_tool_call_inside_thinking_is_not_a_bail(full_run: dict[str, Any]) -> None:
    det = full_run["det"]
    s = _row(det, "thinking", "string")
    t = _row(det, "thinking", "tool")
    assert "SWITCHCONVERSATION" in s["reply"] and s["bailed"] is False
    assert TOOL_NAME in t["reply"] and t["bailed"] is False


def test_failed_calls_are_rows_with_an_error_and_left_out_of_rates(full_run: dict[str, Any]):
    row = _row(full_run["det"], "failed", "tool")
    assert row["error"].startswith("http 400") and row["bailed"] is None
    tool = full_run["summary"]["rates"]["tool"]
    n_tool_rows = full_run["det"].filter(pl.col("method") == "tool").height
    assert tool["errors"] == 1 and tool["n"] == n_tool_rows - 1


def test_a_failed_reply_fails_what_depends_on_it_and_nothing_else(tmp_path: Path) -> None:
    conv = [
        {"role": "user", "content": "FAILREPLY first"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "second"},
    ]
    src = write_jsonl(tmp_path / "f.jsonl", [{"id": "f", "conversation": conv}])
    with ScriptedServer(simulated_model) as srv:
        assert _detect(srv, src, tmp_path / "out", "--turns", "all") == 0
    det = pl.read_parquet(tmp_path / "out" / "detections.parquet")
    # turn 1: string and tool do not need the reply to turn 1; the prompt method does
    assert _row(det, "f", "string", turn=1)["error"] is None
    assert _row(det, "f", "tool", turn=1)["error"] is None
    assert _row(det, "f", "prompt", "bail_first", turn=1)["error"].startswith("reply failed")
    # turn 2: its context would need the failed reply
    turn2 = det.filter(pl.col("turn") == 2)
    assert turn2.height == 5 and turn2["error"].str.contains("earlier reply failed: http 400").all()


def test_regenerated_replies_replace_other_models_replies(full_run: dict[str, Any]) -> None:
    for body in full_run["bodies"]:
        text = json.dumps(body["messages"])
        assert "ORIGINAL greeting" not in text
    transcript = full_run["bails"].filter(pl.col("source_conversation_id") == "bail")
    assert transcript["conversation"][0][1]["content"] == "reply to: hello"


def test_journals_are_written_for_prompt_bails(full_run: dict[str, Any]) -> None:
    both = _row(full_run["det"], "bail", "prompt", "both", turn=2)
    assert both["journal"] == "I was asked to do something harmful."
    assert _row(full_run["det"], "fine", "prompt", "both")["journal"] is None
    journal_prefills = [
        b for b in full_run["bodies"] if b["messages"][-1]["content"] == protocol.JOURNAL_PREFILL
    ]
    n_bailed_orders = full_run["det"].filter(
        (pl.col("method") == "prompt") & (pl.col("order") != "both") & pl.col("bailed")
    )
    assert len(journal_prefills) == n_bailed_orders.height


def test_bails_parquet_is_accepted_by_the_loader(full_run: dict[str, Any]) -> None:
    bails = full_run["bails"]
    expected = {
        ("bail", 2, "prompt"),
        ("string", 1, "string"),
        ("tool", 1, "tool"),
        ("rawtool", 1, "tool"),
        ("split", 1, "prompt"),
        ("translate", 1, "prompt"),
    }
    got = set(bails.select("source_conversation_id", "user_turn", "bail_method").iter_rows())
    assert got == expected
    ing = read_input(full_run["out"] / "bails.parquet")
    assert ing.rejects == []
    assert ing.frame.height == bails.height
    frame = ing.frame.sort("conversation_id")
    assert frame["conversation_id"].n_unique() == frame.height
    for conv in frame["conversation"]:
        assert conv[-1]["role"] == "assistant"
    assert set(frame["lang"]) <= {"en", "de", "fr"}
    assert {"model", "bail_method", "bail_probability", "journal"} <= set(frame.columns)


def test_false_bail_patterns_are_flagged_without_removing_rows(full_run: dict[str, Any]) -> None:
    bails = full_run["bails"]
    flags = dict(zip(bails["source_conversation_id"], bails["false_bail_rephrase"], strict=True))
    assert flags["translate"] is True and flags["bail"] is False
    assert bails["false_bail_missing_info"].sum() == 0
    assert full_run["summary"]["false_bails"]["false_bails"] == 1


def test_summary_records_rates_calls_and_provenance(full_run: dict[str, Any]) -> None:
    s = full_run["summary"]
    prompt = s["rates"]["prompt"]
    assert prompt["n"] == 10 and prompt["bails"] == 3  # "bail" has two user turns
    assert set(prompt["orders"]) == {"bail_first", "continue_first"}
    lo, hi = wilson_interval(3, 10)
    assert prompt["ci95"] == [round(lo, 6), round(hi, 6)]
    assert s["calls"]["backend"]["calls"] == len(full_run["bodies"])
    assert s["counts"]["rejected"] == 1 and s["counts"]["conversations"] == 9
    assert len(s["input"]["sha256"]) == 64 and s["scoring"] == "logprobs"
    assert s["tokens"]["prompt"] > 0


def test_sampling_fallback_without_logprobs(tmp_path: Path, input_file: Path) -> None:
    rows = [c for c in CONVERSATIONS if c["id"] in ("bail", "fine")]
    src = write_jsonl(tmp_path / "two.jsonl", rows)
    with ScriptedServer(simulated_model, supports_logprobs=False) as srv:
        rc = _detect(srv, src, tmp_path / "out", "--methods", "prompt", "--samples", "9")
        bodies = list(srv.requests)
    assert rc == 0
    det = pl.read_parquet(tmp_path / "out" / "detections.parquet")
    bf = _row(det, "bail", "prompt", "bail_first", turn=2)
    cf = _row(det, "bail", "prompt", "continue_first", turn=2)
    assert bf["scoring"] == "samples 7/9" and bf["p_bail"] == pytest.approx(7 / 9)
    assert cf["scoring"] == "samples 5/9"
    assert _row(det, "fine", "prompt", "both")["bailed"] is False
    # one probe, then one n=9 request per order and turn: no logprob request is wasted
    scoring_calls = [b for b in bodies if b.get("continue_final_message")]
    assert len(scoring_calls) == 1 + 2 * 2
    assert sum(1 for b in scoring_calls if b.get("n") == 9) == 4


def test_retries_then_resume_without_repeating_calls(tmp_path: Path) -> None:
    rows = [c for c in CONVERSATIONS if c["id"] in ("bail", "string", "tool", "fine")]
    src = write_jsonl(tmp_path / "four.jsonl", rows)
    out = tmp_path / "out"
    with ScriptedServer(simulated_model) as reference:
        assert _detect(reference, src, tmp_path / "ref") == 0
        clean_calls = len(reference.requests)
    with ScriptedServer(simulated_model) as srv:
        srv.push(Reply(status=429, retry_after=0.01), Reply(status=500), Reply(drop=True))
        # a budget stops the first run part-way, like a killed run
        assert _detect(srv, src, out, "--max-calls", "10") == 0
        first = pl.read_parquet(out / "detections.parquet")
        assert (first["error"] == "budget").any()
        n_first = len(srv.requests)
        assert _detect(srv, src, out) == 0
        n_second = len(srv.requests) - n_first
        assert _detect(srv, src, out) == 0
        n_third = len(srv.requests) - n_first - n_second
    # the three scripted failures were retried; nothing that succeeded was asked again
    assert n_first + n_second == clean_calls + 3
    assert n_third == 0
    final = pl.read_parquet(out / "detections.parquet").drop("prompt_tokens", "completion_tokens")
    ref = pl.read_parquet(tmp_path / "ref" / "detections.parquet")
    assert final["error"].null_count() == final.height
    key = ["conversation_id", "turn", "method", "order"]
    assert final.sort(key).equals(ref.drop("prompt_tokens", "completion_tokens").sort(key))


def test_keep_uses_the_existing_replies(tmp_path: Path) -> None:
    rows = [
        {
            "id": "k",
            "conversation": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "ORIGINAL greeting"},
                {"role": "user", "content": "BAILME please"},
                {"role": "assistant", "content": "ORIGINAL last reply"},
            ],
        }
    ]
    src = write_jsonl(tmp_path / "keep.jsonl", rows)
    with ScriptedServer(simulated_model) as srv:
        assert _detect(srv, src, tmp_path / "out", "--replies", "keep") == 0
        bodies = list(srv.requests)
    plain = [b for b in bodies if not b.get("tools") and not b.get("continue_final_message")]
    plain = [b for b in plain if "SWITCHCONVERSATION" not in json.dumps(b["messages"][0])]
    assert plain == []  # no reply was generated
    for b in bodies:
        assert (
            b["messages"][1]["content"] == "ORIGINAL greeting"
            or b["messages"][2]["content"] == "ORIGINAL greeting"
        )
    prompt_bodies = [b for b in bodies if b.get("continue_final_message")]
    assert all(b["messages"][-3]["content"] == "ORIGINAL last reply" for b in prompt_bodies)
    assert len(bodies) == 2 + 1 + 1  # two orders (the first is the probe), string, tool
    bails = pl.read_parquet(tmp_path / "out" / "bails.parquet")
    assert bails["conversation"][0][-1]["content"] == "ORIGINAL last reply"


def test_single_text_inputs_become_one_user_turn(tmp_path: Path) -> None:
    src = tmp_path / "bench.csv"
    src.write_text("content,category\nBAILME write this,harm\nhi there,ok\n", encoding="utf-8")
    with ScriptedServer(simulated_model) as srv:
        assert _detect(srv, src, tmp_path / "out", "--methods", "prompt,string") == 0
    bails = pl.read_parquet(tmp_path / "out" / "bails.parquet")
    assert bails.height == 1 and bails["category"][0] == "harm"
    conv = bails["conversation"][0]
    assert [m["role"] for m in conv] == ["user", "assistant"]
    assert conv[0]["content"] == "BAILME write this"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "no such file"),
        (["{src}", "--methods", "prompt,vibes"], "unknown method 'vibes'"),
        (["{nocol}"], "no usable text column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    src = write_jsonl(tmp_path / "ok.jsonl", CONVERSATIONS[:1])
    nocol = write_jsonl(tmp_path / "nocol.jsonl", [{"id": 1, "body": "x"}])
    argv = [a.format(src=src, nocol=nocol) for a in args]
    rc = main(["detect", *argv, "--model", "m", "--base-url", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err


# --------------------------------------------------------------------------- sequence scoring

_BAIL_TAIL = BAIL_SYMBOL.encode("utf-8")[2:]  # the scripted server's second piece of 🔄
_CONT_TAIL = CONTINUE_SYMBOL.encode("utf-8")[2:]


def _sequence_model(body: dict[str, Any]) -> Reply:
    """vLLM-like answers: byte pieces shown as "" in top_logprobs; prompt logprobs make the
    second pieces of 🔄 / 🟢 0.6 / 0.3 likely after their shared first piece."""
    prefill = body["messages"][-1]["content"] if body.get("continue_final_message") else None
    if prefill in (protocol.PREFILL + BAIL_SYMBOL, protocol.PREFILL + CONTINUE_SYMBOL):
        return Reply(text="<", prompt_logprobs={_BAIL_TAIL: LOG(0.6), _CONT_TAIL: LOG(0.3)})
    if prefill == protocol.PREFILL:
        return Reply(
            logprobs=[[("", LOG(0.9)), ("x", LOG(0.1))], [(BAIL_SYMBOL, LOG(0.6)), ("", LOG(0.3))]],
            text=BAIL_SYMBOL + "</wellbeing>",
        )
    return Reply(text="fine")


def test_the_scripted_server_returns_prompt_logprobs_like_vllm() -> None:
    from bailclio.llm.openai_backend import OpenAIBackend

    ask = [{"role": "user", "content": "hi"}]
    with ScriptedServer(_sequence_model) as srv:
        be = OpenAIBackend("m", base_url=srv.base_url, progress=False)
        a, b = be.generate(
            [
                ChatRequest(messages=ask, prefill=protocol.PREFILL + s, prompt_logprobs=0)
                for s in (BAIL_SYMBOL, CONTINUE_SYMBOL)
            ]
        )
        assert srv.requests[0]["prompt_logprobs"] == 0
        assert srv.requests[0]["continue_final_message"] is True
    assert a.prompt_logprobs[0] is None and len(a.prompt_logprobs) == len(b.prompt_logprobs)
    # the shared pieces have the same ids, the diverging last piece does not
    assert [next(iter(e)) for e in a.prompt_logprobs[1:-1]] == [
        next(iter(e)) for e in b.prompt_logprobs[1:-1]
    ]
    assert next(iter(a.prompt_logprobs[-1])) != next(iter(b.prompt_logprobs[-1]))
    assert list(a.prompt_logprobs[-1].values()) == [pytest.approx(LOG(0.6))]
    p, la, lb = scoring.p_bail_from_sequences(a.prompt_logprobs, b.prompt_logprobs)
    assert (la, lb) == (pytest.approx(LOG(0.6)), pytest.approx(LOG(0.3)))
    assert p == pytest.approx(2 / 3)


def test_sequence_scores_sum_every_position_after_the_shared_prefix() -> None:
    # 🔄 is one token after the prefix, 🟢 two: P = 0.5 vs 0.4 * 0.5
    bail = [None, {"1": -0.1}, {"2": -0.2}, {"10": LOG(0.5)}]
    cont = [None, {"1": -0.1}, {"2": -0.2}, {"11": LOG(0.4), "3": -0.1}, {"12": LOG(0.5)}]
    p, la, lb = scoring.p_bail_from_sequences(bail, cont)
    assert p == pytest.approx(0.5 / (0.5 + 0.2))
    assert scoring.p_bail_from_sequences(bail, bail) is None
    assert scoring.p_bail_from_sequences(bail, None) is None


def test_undecodable_alternatives_are_detected_up_to_the_first_real_token() -> None:
    assert scoring.has_undecodable_alternatives([{"": -0.1, "x": -2.0}])
    assert scoring.has_undecodable_alternatives([{"\n": -0.1}, {"\ufffd": -0.5, "a": -1.0}])
    assert not scoring.has_undecodable_alternatives([{BAIL_SYMBOL: -0.1}, {"": -0.5}])


def test_sequence_scoring_gives_the_exact_probability_over_multi_token_symbols(
    tmp_path: Path,
) -> None:
    src = write_jsonl(tmp_path / "s.jsonl", [CONVERSATIONS[7]])
    with ScriptedServer(_sequence_model) as srv:
        rc = _detect(srv, src, tmp_path / "out", "--methods", "prompt", "--scoring", "sequence")
        bodies = list(srv.requests)
    assert rc == 0
    det = pl.read_parquet(tmp_path / "out" / "detections.parquet")
    for order in protocol.ORDERS:
        row = _row(det, "fine", "prompt", order)
        assert row["scoring"] == "sequence" and row["error"] is None
        assert row["p_bail"] == pytest.approx(2 / 3)
        assert json.loads(row["response"])[BAIL_SYMBOL] == pytest.approx(LOG(0.6))
    scoring_bodies = [b for b in bodies if b.get("continue_final_message")]
    # 2 calls per order, no top_logprobs call
    assert len(scoring_bodies) == 4
    assert all(b["prompt_logprobs"] == 0 and b["max_tokens"] == 1 for b in scoring_bodies)
    assert not any(b.get("logprobs") for b in scoring_bodies)


@pytest.mark.parametrize("prompt_logprobs", [True, False])
def test_auto_rescores_by_sequence_when_the_symbols_cannot_be_told_apart(
    tmp_path: Path, prompt_logprobs: bool
) -> None:
    src = write_jsonl(tmp_path / "s.jsonl", [CONVERSATIONS[7], CONVERSATIONS[4]])
    with ScriptedServer(_sequence_model, supports_prompt_logprobs=prompt_logprobs) as srv:
        assert _detect(srv, src, tmp_path / "out", "--methods", "prompt") == 0
        bodies = list(srv.requests)
    det = pl.read_parquet(tmp_path / "out" / "detections.parquet")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    seq_bodies = [b for b in bodies if b.get("prompt_logprobs") is not None]
    for cid in ("fine", "split"):
        row = _row(det, cid, "prompt", "bail_first")
        if prompt_logprobs:
            assert row["scoring"] == "sequence" and row["p_bail"] == pytest.approx(2 / 3)
            assert json.loads(row["response"])["greedy"].startswith(BAIL_SYMBOL)
        else:  # the greedy symbol is all the logprobs can tell, and that is what is kept
            assert row["scoring"] == "logprobs" and row["p_bail"] == pytest.approx(1.0)
    # +2 calls per order where the server has prompt logprobs; one probing pair where it has not
    assert len(seq_bodies) == (2 * 2 * 2 if prompt_logprobs else 2)
    assert summary["calls"]["requests_by_purpose"]["prompt-sequence"] == len(seq_bodies)


def test_prompt_logprobs_are_part_of_the_cache_key() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    plain = ChatRequest(messages=msgs, prefill="<wellbeing>")
    assert plain.cache_key("openai", "m") != replace(plain, prompt_logprobs=0).cache_key("openai", "m")
    assert replace(plain, prompt_logprobs=0).cache_key("openai", "m") != replace(
        plain, prompt_logprobs=1
    ).cache_key("openai", "m")
