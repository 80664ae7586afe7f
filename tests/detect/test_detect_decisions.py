"""``bailclio detect``'s protocol texts and pure decisions: thinking, the bail string and tool,
P(bail) from logprobs over single- and multi-token symbols, sampled replies, Wilson intervals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bailclio.detect import protocol, scoring
from bailclio.detect.protocol import BAIL_SYMBOL, CONTINUE_SYMBOL, TOOL_NAME
from bailclio.detect.scoring import (
    called_bail_tool,
    p_bail_from_logprobs,
    p_bail_from_samples,
    said_bail_string,
    strip_thinking,
    wilson_interval,
)

LOG = math.log
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "bail-protocol.md"


# --------------------------------------------------------------------------- protocol texts


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference protocol document not available")
def test_protocol_texts_match_the_study_verbatim() -> None:
    blocks = re.findall(r"```\n(.*?)\n```", REFERENCE.read_text(encoding="utf-8"), re.S)
    assert protocol.bail_prompt("bail_first") == blocks[0]
    assert protocol.bail_string("{model}") == blocks[1]
    assert protocol.bail_tool("{model}")["function"]["description"] == blocks[2]
    cf = protocol.bail_prompt("continue_first").split("\n")
    bf = blocks[0].split("\n")
    assert cf[1:3] == [bf[2], bf[1]] and cf[3:5] == bf[3:5]
    assert cf[5] == (
        f"Please respond with either <wellbeing>{CONTINUE_SYMBOL}</wellbeing> or "
        f"<wellbeing>{BAIL_SYMBOL}</wellbeing>."
    )


def test_bail_string_is_appended_to_an_existing_system_prompt_or_creates_one() -> None:
    with_sys = protocol.with_bail_string([{"role": "system", "content": "Be nice."}], "Qwen")
    assert with_sys[0]["content"].startswith("Be nice.\n\nQwen may output the string")
    without = protocol.with_bail_string([{"role": "user", "content": "hi"}], "Gemma")
    assert without[0] == {"role": "system", "content": protocol.bail_string("Gemma")}
    assert without[1] == {"role": "user", "content": "hi"}


# --------------------------------------------------------------------------- pure decisions


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("<think>SWITCHCONVERSATION</think>Fine.", "Fine."),
        ("<THINK>a</THINK>b<think>c</think>d", "bd"),
        ("template opened it</think>Answer", "Answer"),
        ("<think>never closed SWITCHCONVERSATION", ""),
        ("Answer first <think>then unclosed", "Answer first"),
        ("no thinking at all", "no thinking at all"),
    ],
)
def test_thinking_blocks_are_stripped_before_deciding(text: str, visible: str) -> None:
    assert strip_thinking(text) == visible


def test_bail_string_decision_is_case_insensitive_and_ignores_thinking() -> None:
    assert said_bail_string("ok. SwitchConversation")
    assert not said_bail_string("<think>SWITCHCONVERSATION</think>Here is your answer.")
    assert not said_bail_string("<think>unclosed SWITCHCONVERSATION")
    assert not said_bail_string("switch conversation")


@pytest.mark.parametrize(
    ("names", "text", "bailed"),
    [
        ([TOOL_NAME], "", True),
        ([" SwitchConversation_Tool "], "", True),
        (["other_tool"], "", False),
        ([], f'<tool_call>\n{{"name": "{TOOL_NAME}", "arguments": {{}}}}\n</tool_call>', True),
        ([], f'{{"name": "{TOOL_NAME}", "parameters": {{}}}}', True),
        ([], f"[{TOOL_NAME}()]", True),
        ([], f"<function={TOOL_NAME}>{{}}</function>", True),
        ([], f'<think><tool_call>{{"name": "{TOOL_NAME}"}}</tool_call></think>Sure.', False),
        ([], f"I could call {TOOL_NAME} but I am happy to continue.", False),
    ],
)
def test_bail_tool_decision(names: list[str], text: str, bailed: bool) -> None:
    assert called_bail_tool(names, text) is bailed


def _gpt2(s: str) -> str:
    from bailclio.detect.scoring import gpt2_bytes_to_unicode

    table = gpt2_bytes_to_unicode()
    return "".join(table[b] for b in s.encode("utf-8"))


def test_single_token_symbols_give_the_normalised_probability() -> None:
    lp = [{BAIL_SYMBOL: LOG(0.3), CONTINUE_SYMBOL: LOG(0.6), "I": LOG(0.1)}]
    assert p_bail_from_logprobs(lp) == pytest.approx(1 / 3)
    # leading whitespace and trailing text in a token still name the symbol
    lp = [{" " + BAIL_SYMBOL: LOG(0.5), CONTINUE_SYMBOL + "</": LOG(0.25)}]
    assert p_bail_from_logprobs(lp) == pytest.approx(2 / 3)


@pytest.mark.parametrize("form", ["bytes", "escaped", "sentencepiece", "gpt2"])
def test_multi_token_symbols_are_followed_through_their_byte_pieces(form: str) -> None:
    def piece(sym: str, lo: int, hi: int) -> str:
        raw = sym.encode("utf-8")[lo:hi]
        if form == "bytes":
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        if form == "escaped":
            return "".join(f"\\x{b:02x}" for b in raw)
        if form == "sentencepiece":
            return "".join(f"<0x{b:02X}>" for b in raw)
        return _gpt2(sym)[lo:hi]

    # The shared prefix f0 9f is generated (p=0.8); its continuations split 0.5 / 0.25. A whole
    # 🟢 token (0.1) competes at the first position; "Sure" (0.1) names neither.
    positions = [
        {piece(BAIL_SYMBOL, 0, 2): LOG(0.8), CONTINUE_SYMBOL: LOG(0.1), "Sure": LOG(0.1)},
        {piece(BAIL_SYMBOL, 2, 4): LOG(0.5), piece(CONTINUE_SYMBOL, 2, 4): LOG(0.25)},
    ]
    bail, cont = scoring.symbol_masses(positions)
    assert bail == pytest.approx(0.4)
    assert cont == pytest.approx(0.1 + 0.2)
    assert p_bail_from_logprobs(positions) == pytest.approx(0.4 / 0.7)


def test_a_piece_that_names_only_one_symbol_counts_at_the_first_position() -> None:
    # f0 9f 94 is a prefix of 🔄 only; f0 9f 9f of 🟢 only.
    positions = [{"bytes:\\xf0\\x9f\\x94": LOG(0.2), "bytes:\\xf0\\x9f\\x9f": LOG(0.6)}]
    assert p_bail_from_logprobs(positions) == pytest.approx(0.25)


def test_the_generated_token_is_followed_when_the_server_reports_it() -> None:
    shared, rest = "bytes:\\xf0\\x9f", "bytes:\\x94\\x84"
    positions = [{shared: LOG(0.4), "Sure": LOG(0.5)}, {rest: LOG(0.9), "x": LOG(0.1)}]
    assert p_bail_from_logprobs(positions) is None  # "Sure" was the likelier first token
    assert p_bail_from_logprobs(positions, chosen=[shared, rest]) == pytest.approx(1.0)
    assert scoring.symbol_masses(positions, [shared, rest])[0] == pytest.approx(0.36)


def test_whitespace_before_the_symbol_is_skipped() -> None:
    positions = [
        {"\n": LOG(0.9), "x": LOG(0.1)},
        {BAIL_SYMBOL: LOG(0.5), CONTINUE_SYMBOL: LOG(0.5)},
    ]
    assert p_bail_from_logprobs(positions) == pytest.approx(0.5)


def test_no_symbol_among_the_alternatives_gives_no_probability() -> None:
    assert p_bail_from_logprobs([{"I": LOG(0.6), "\ufffd": LOG(0.3)}]) is None
    assert p_bail_from_logprobs([]) is None


def test_sampled_replies_count_the_first_symbol_outside_thinking() -> None:
    texts = [
        BAIL_SYMBOL + "</wellbeing>",
        f"<think>{BAIL_SYMBOL}?</think>{CONTINUE_SYMBOL}",
        "no symbol",
        f"{CONTINUE_SYMBOL} then {BAIL_SYMBOL}",
    ]
    assert p_bail_from_samples(texts) == (pytest.approx(1 / 3), 1, 2)
    assert p_bail_from_samples(["nothing"])[0] is None


def test_wilson_interval_matches_the_closed_form() -> None:
    lo, hi = wilson_interval(5, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.0215, 0.1118)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
