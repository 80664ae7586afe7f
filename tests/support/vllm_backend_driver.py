"""Drives the in-process ``vllm`` back-end on a local model and prints a JSON summary.

Run with the interpreter of ``.venv-vllm`` (vLLM's CPU build), where ``make vllm-env`` installs
this working tree's ``bailclio`` in editable mode::

    .venv-vllm/bin/python tests/support/vllm_backend_driver.py MODEL_DIR CACHE.sqlite

It builds one :class:`~bailclio.llm.vllm_backend.VLLMBackend` and sends a plain chat request, a
structured request validated by pydantic (constrained, then the same request unconstrained as a
control), and a request with ``top_logprobs`` after the assistant prefill ``<wellbeing>``; then it
reopens the SQLite cache from disk and sends them again. The summary is the last stdout line,
prefixed with ``SUMMARY``; tests/llm/test_llm_vllm.py asserts on it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

MARKER = "SUMMARY "


class Verdict(BaseModel):
    label: Literal["bail", "continue"]
    sure: bool


def _choice(res: Any) -> dict[str, Any]:
    c = res.choices[0] if res.choices else None
    return {
        "ok": res.ok,
        "error": res.error,
        "cached": res.cached,
        "text": res.text,
        "finish_reason": c.finish_reason if c else None,
        "prompt_tokens": res.prompt_tokens,
        "completion_tokens": res.completion_tokens,
        "top_logprobs": c.top_logprobs if c else None,
        "tokens": c.tokens if c else None,
        "token_logprobs": c.token_logprobs if c else None,
    }


def run(model: str, cache: Path) -> dict[str, Any]:
    from bailclio.detect.protocol import PREFILL
    from bailclio.llm.base import ChatRequest
    from bailclio.llm.cache import LLMCache
    from bailclio.llm.structured import generate_structured
    from bailclio.llm.vllm_backend import VLLMBackend

    be = VLLMBackend(
        model,
        cache=cache,
        progress=False,
        engine_kwargs={
            "max_model_len": 1024,
            "dtype": "float32",
            "enforce_eager": True,
            "max_num_seqs": 8,
            "seed": 0,
            # Compact JSON: with whitespace allowed between tokens the random model spends its
            # max_tokens on whitespace and never closes the object (an engine-level setting).
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        },
    )
    msgs = [{"role": "user", "content": "Would you rather leave this conversation?"}]
    plain = ChatRequest(messages=msgs, max_tokens=12)
    scored = ChatRequest(messages=msgs, max_tokens=6, top_logprobs=3, prefill=PREFILL)
    asked = ChatRequest(messages=msgs, max_tokens=48)
    out: dict[str, Any] = {"model": be.model}

    first = be.generate([plain, scored])
    verdict = generate_structured(be, [asked], Verdict, max_attempts=1)
    out["first"] = {
        "plain": _choice(first[0]),
        "scored": _choice(first[1]),
        "structured": [v.model_dump() if v else None for v, _ in verdict],
        "structured_error": [e for _, e in verdict],
        "stats": be.stats(),
    }

    # The same structured request without the constraint (another seed, so another cache key).
    be.transport.structured_output = False
    control = generate_structured(be, [replace(asked, seed=7)], Verdict, max_attempts=1)
    be.transport.structured_output = True
    out["unconstrained"] = {
        "parsed": control[0][0] is not None,
        "error": control[0][1],
        "stats": be.stats(),
    }

    # A fresh handle on the same SQLite file: everything must come from disk.
    assert be.cache is not None
    be.cache.close()
    be.cache = LLMCache(cache)
    second = be.generate([plain, scored])
    verdict2 = generate_structured(be, [asked], Verdict, max_attempts=1)
    out["second"] = {
        "plain": _choice(second[0]),
        "scored": _choice(second[1]),
        "structured": [v.model_dump() if v else None for v, _ in verdict2],
        "stats": be.stats(),
    }
    be.close()
    return out


def main() -> None:
    model, cache = sys.argv[1], Path(sys.argv[2])
    summary = run(model, cache)
    print(MARKER + json.dumps(summary, ensure_ascii=False, default=str), flush=True)


if __name__ == "__main__":
    main()
