"""The one wrapper: any transport put in ``Backend`` gets the cache, dedupe, budget, counters and
the outage stop, the same for every back-end. The transport here is what a plugin writes: a plain
class answering in-process (nothing external is stood in for)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bailclio.errors import LLMUnavailable
from bailclio.llm.backend import Backend
from bailclio.llm.base import ChatRequest, ChatResult, Choice, Meter, ServerDown


class Upper:
    """Answers each request with its text in capitals; fails the ones containing "bad"; goes
    down (after answering what it could) once ``down_after`` calls were made."""

    name = "upper"
    model = "u1"

    def __init__(self, down_after: int | None = None) -> None:
        self.sent: list[str] = []
        self.down_after = down_after

    def send(
        self, requests: list[ChatRequest], meter: Meter, done: Callable[[int, ChatResult], None]
    ) -> None:
        for i, req in enumerate(requests):
            if self.down_after is not None and len(self.sent) >= self.down_after:
                raise ServerDown("upper server is failing")
            if not meter.allow():
                done(i, ChatResult(error="budget"))
                continue
            text = req.messages[-1]["content"]
            self.sent.append(text)
            if "bad" in text:
                done(i, ChatResult(error="http 500 after 1 attempts"))
                continue
            result = ChatResult(choices=[Choice(text=text.upper())], prompt_tokens=2, completion_tokens=1)
            meter.spend(result)
            done(i, result)

    def info(self) -> dict[str, Any]:
        return {"letters": "upper"}

    def close(self) -> None:
        pass


def ask(*texts: str) -> list[ChatRequest]:
    return [
        ChatRequest(messages=[{"role": "user", "content": t}], tag=f"row {i}") for i, t in enumerate(texts)
    ]


def test_each_distinct_request_is_sent_once_and_every_row_gets_its_answer_and_tag() -> None:
    transport = Upper()
    be = Backend(transport, progress=False)
    out = be.generate(ask("a", "b", "a", "bad", "a"))
    assert [r.text or r.error for r in out] == ["A", "B", "A", "http 500 after 1 attempts", "A"]
    assert [r.tag for r in out] == [f"row {i}" for i in range(5)]
    assert transport.sent == ["a", "b", "bad"]
    stats = be.stats()
    assert (stats["backend"], stats["model"], stats["letters"]) == ("upper", "u1", "upper")
    assert (stats["calls"], stats["failures"], stats["prompt_tokens"], stats["completion_tokens"]) == (
        3,
        1,
        4,
        2,
    )


def test_a_second_back_end_on_the_same_cache_makes_no_call_and_failures_are_asked_again(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "c.sqlite"
    first = Backend(Upper(), cache=cache, progress=False)
    first.generate(ask("a", "b", "bad"))
    first.close()
    transport = Upper()
    second = Backend(transport, cache=cache, progress=False)
    out = second.generate(ask("b", "a", "bad"))
    assert [r.text for r in out[:2]] == ["B", "A"] and all(r.cached for r in out[:2])
    assert transport.sent == ["bad"]  # a failure is never cached
    assert second.stats()["cache_hits"] == 2


def test_the_budget_stops_cleanly_and_says_so() -> None:
    be = Backend(Upper(), max_calls=2, progress=False)
    out = be.generate(ask("a", "b", "c", "d"))
    assert [r.text or r.error for r in out] == ["A", "B", "budget", "budget"]
    assert be.budget_exhausted and be.stats()["budget_skipped"] == 2
    assert [r.error for r in be.generate(ask("e"))] == ["budget"]


def test_a_server_gone_keeps_what_completed_and_raises_one_resumable_error(tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    be = Backend(Upper(down_after=2), cache=cache, progress=False)
    with pytest.raises(LLMUnavailable, match="upper server is failing") as info:
        be.generate(ask("a", "b", "c", "d"))
    assert info.value.resumable and str(cache) in str(info.value) and "\n" not in str(info.value)
    assert be.outage == "upper server is failing"
    be.close()
    again = Backend(Upper(), cache=cache, progress=False)
    assert [r.cached for r in again.generate(ask("a", "b"))] == [True, True]
