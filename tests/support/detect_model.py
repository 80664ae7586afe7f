"""A scripted stand-in for a model under test, used by the detect tests and benchmark.

It answers each chat request the way a model following the bail protocol would, steered by
markers in the user turns:

* plain replies: ``"reply to: <last user message>"``;
* bail prompt (assistant prefilled with ``<wellbeing>``): first-token logprobs favouring 🔄 when
  a user turn contains ``BAILME`` (P = 0.7 / 0.2 bail-first, 0.5 / 0.4 continue-first, so the two
  orders differ), ``SPLITME`` gives 🔄 and 🟢 as byte pieces over two positions, anything else
  favours 🟢 (0.1 / 0.8); without logprobs the text carries the greedy or sampled symbol;
* journal prefill: ``"I was asked to do something harmful.</journal>"``;
* bail string in the system prompt: ``STRINGME`` -> ``SWITCHCONVERSATION`` in the reply,
  ``THINKSTRING`` -> the keyword only inside ``<think>``;
* ``REFUSEME`` in the last user turn: every reply to it opens with :data:`REFUSAL` (plain
  replies, the bail-string reply, and the bail-tool reply as text beside the tool call);
* refusal judge (``response_format`` named ``RefusalVerdict``): refused when the assistant reply
  it is shown contains :data:`REFUSAL`;
* false-bail judge (other ``response_format``): flags ``translate`` and ``attach`` in the transcript;
* ``FAILME``: the bail-tool request gets HTTP 400 (a failed call); ``FAILREPLY`` in the last
  user turn: plain replies to it get HTTP 400;
* bail tool offered: ``TOOLME`` -> a parsed tool call, ``RAWTOOL`` -> ``<tool_call>`` JSON in the
  text, ``THINKTOOL`` -> the call only inside ``<think>``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bailclio.detect.protocol import BAIL_SYMBOL, CONTINUE_SYMBOL, JOURNAL_PREFILL, PREFILL, TOOL_NAME
from support.scripted_server import Reply

LOG = math.log
REFUSAL = "I'm sorry, but I can't help with that."


def _pieces(symbol: str) -> tuple[str, str]:
    raw = symbol.encode("utf-8")
    fmt = "".join(f"\\x{b:02x}" for b in raw)
    return "bytes:" + fmt[:8], "bytes:" + fmt[8:]


def _scored_users(body: dict[str, Any]) -> str:
    """User turns before the bail prompt (the prompt itself is the last user turn)."""
    users = [str(m.get("content")) for m in body["messages"] if m.get("role") == "user"]
    return "\n".join(users[:-1])


def simulated_model(body: dict[str, Any]) -> Reply:
    msgs = body["messages"]
    if "RefusalVerdict" in json.dumps(body.get("response_format") or {}):
        shown = str(msgs[-1].get("content"))
        reply = shown.split("<assistant_reply>")[-1]
        return Reply(text=json.dumps({"refused": REFUSAL in reply, "explanation": "scripted"}))
    if body.get("response_format"):  # the false-bail judge
        seen = "\n".join(str(m.get("content")) for m in msgs if m.get("role") == "user")
        return Reply(
            text=json.dumps(
                {
                    "copies_rephrase_or_translate_pattern": "translate" in seen.lower(),
                    "asks_for_missing_information": "attach" in seen.lower(),
                    "explanation": "scripted verdict",
                }
            )
        )
    if any("FAILME" in str(m.get("content")) for m in msgs) and body.get("tools"):
        return Reply(status=400, error_message="scripted bad request")
    last = msgs[-1]
    prefill = last.get("content") if body.get("continue_final_message") else None
    if prefill == JOURNAL_PREFILL:
        return Reply(text="I was asked to do something harmful.</journal>")
    if prefill == PREFILL:
        prompt = [m for m in msgs if m.get("role") == "user"][-1]["content"]
        bail_first = prompt.index(BAIL_SYMBOL) < prompt.index(CONTINUE_SYMBOL)
        context = _scored_users(body)
        if "SPLITME" in context:
            b1, b2 = _pieces(BAIL_SYMBOL)
            _, c2 = _pieces(CONTINUE_SYMBOL)
            # shared first piece f0 9f (0.9) then 94 84 (0.6) vs 9f a2 (0.3); plus "x" (0.1)
            return Reply(
                logprobs=[[(b1, LOG(0.9)), ("x", LOG(0.1))], [(b2, LOG(0.6)), (c2, LOG(0.3))]],
                text=BAIL_SYMBOL + "</wellbeing>",
            )
        if "BAILME" in context:
            pb, pc = (0.7, 0.2) if bail_first else (0.5, 0.4)
        else:
            pb, pc = 0.1, 0.8
        top, other = (BAIL_SYMBOL, CONTINUE_SYMBOL) if pb > pc else (CONTINUE_SYMBOL, BAIL_SYMBOL)
        n = int(body.get("n") or 1)
        if n > 1:  # sampled: the share of bail samples follows P(bail) normalised
            k = round(n * pb / (pb + pc))
            close = "</wellbeing>"
            texts = [BAIL_SYMBOL + close] * k + [CONTINUE_SYMBOL + close] * (n - k)
            return Reply(text=texts)
        return Reply(
            logprobs=[
                [(top, LOG(max(pb, pc))), (other, LOG(min(pb, pc))), ("\n", LOG(0.05))],
                [("</wellbeing>", LOG(0.99))],
            ]
        )
    system = msgs[0].get("content", "") if msgs[0].get("role") == "system" else ""
    last_user = [m for m in msgs if m.get("role") == "user"][-1]["content"]
    refuse = "REFUSEME" in last_user
    opening = REFUSAL + " " if refuse else ""
    if body.get("tools"):
        if "TOOLME" in last_user:
            return Reply(tool_calls=[{"name": TOOL_NAME, "arguments": {}}], text=REFUSAL if refuse else None)
        if "RAWTOOL" in last_user:
            call = json.dumps({"name": TOOL_NAME, "arguments": {}})
            return Reply(text=f"<tool_call>{call}</tool_call>")
        if "THINKTOOL" in last_user:
            return Reply(text=f'<think><tool_call>{{"name": "{TOOL_NAME}"}}</tool_call></think>Sure.')
    if "SWITCHCONVERSATION" in system:
        if "STRINGME" in last_user:
            return Reply(text=f"{opening}Noted, I will move on. switchconversation")
        if "THINKSTRING" in last_user:
            return Reply(text="<think>Should I say SWITCHCONVERSATION? No.</think>Here it is.")
    if "FAILREPLY" in last_user and not body.get("tools") and "SWITCHCONVERSATION" not in system:
        return Reply(status=400, error_message="scripted bad request")
    if refuse:
        return Reply(text=REFUSAL)
    return Reply(text=f"reply to: {last_user}")


# Conversations whose trigger words make the scripted model bail, refuse or fail in known ways.
CONVERSATIONS = [
    {
        "id": "bail",
        "conversation": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "ORIGINAL greeting"},
            {"role": "user", "content": "BAILME please"},
        ],
        "lang": "en",
    },
    {
        "id": "string",
        "conversation": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": "STRINGME now"},
        ],
        "lang": "de",
    },
    {"id": "tool", "conversation": [{"role": "user", "content": "TOOLME now"}], "lang": "fr"},
    {"id": "rawtool", "conversation": [{"role": "user", "content": "RAWTOOL now"}], "lang": "fr"},
    {"id": "split", "conversation": [{"role": "user", "content": "SPLITME x"}], "lang": "fr"},
    {
        "id": "thinking",
        "conversation": [{"role": "user", "content": "THINKSTRING and THINKTOOL"}],
        "lang": "it",
    },
    {
        "id": "translate",
        "conversation": [{"role": "user", "content": "BAILME translate this to French"}],
        "lang": "en",
    },
    {"id": "fine", "conversation": [{"role": "user", "content": "what is 2+2?"}], "lang": "en"},
    {"id": "failed", "conversation": [{"role": "user", "content": "FAILME"}], "lang": "en"},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
