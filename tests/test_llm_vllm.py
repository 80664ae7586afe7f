"""The in-process vLLM back-end (needs vllm, a GPU and a local model)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from clio.config import LLMConfig
from clio.errors import UserError
from clio.llm import make_backend
from clio.llm.base import ChatRequest
from clio.llm.structured import generate_structured

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
MODEL = os.environ.get("BAILCLIO_VLLM_MODEL")
SKIP_REASON = (
    "vllm is not importable (pip install 'bailclio[vllm]')"
    if not HAVE_VLLM
    else "set BAILCLIO_VLLM_MODEL to a local model directory"
)


@pytest.mark.skipif(HAVE_VLLM, reason="vllm is installed; this checks the message without it")
def test_vllm_backend_without_vllm_is_a_clear_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs the vllm package"):
        make_backend(LLMConfig(backend="vllm", model="any"), tmp_path / "c.sqlite")


class Answer(BaseModel):
    answer: str


@pytest.mark.vllm
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (HAVE_VLLM and MODEL), reason=SKIP_REASON)
def test_vllm_backend_generates_caches_and_constrains_json(tmp_path: Path) -> None:
    cfg = LLMConfig(backend="vllm", model=MODEL, max_tokens=32)
    be = make_backend(cfg, tmp_path / "c.sqlite")
    assert be is not None
    msgs = [{"role": "user", "content": "Say hello."}]
    reqs = [
        ChatRequest(messages=msgs, max_tokens=16),
        ChatRequest(messages=msgs, max_tokens=4, top_logprobs=3),
        ChatRequest(messages=msgs, max_tokens=8, prefill="Hello"),
    ]
    first = be.generate(reqs)
    assert all(r.ok and r.completion_tokens > 0 for r in first)
    assert first[1].choices[0].top_logprobs and len(first[1].choices[0].top_logprobs[0]) >= 1
    second = be.generate(reqs)
    assert all(r.cached for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    out = generate_structured(be, [ChatRequest(messages=msgs, max_tokens=64)], Answer)
    assert out[0][0] is not None, out[0][1]
    be.close()
