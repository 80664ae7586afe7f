"""LLM back-ends (OpenAI-compatible HTTP, in-process vLLM) behind one small interface.

``make_backend(config.llm, run_dir / "llm_cache.sqlite")`` gives the configured back-end (or
``None`` when ``llm.backend = "none"``); every back-end returns :class:`ChatResult` per
:class:`ChatRequest`, caches completed calls on disk and reports counters through ``stats()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bailclio.errors import UserError
from bailclio.llm.base import ChatRequest, ChatResult, Choice, LLMBackend, ToolCall

if TYPE_CHECKING:
    from bailclio.config import LLMConfig

__all__ = ["ChatRequest", "ChatResult", "Choice", "LLMBackend", "ToolCall", "make_backend"]


def make_backend(
    llm_config: LLMConfig, cache_path: str | Path | None, *, progress: bool = True
) -> LLMBackend | None:
    """The back-end named by ``llm_config.backend``; ``llm_config.cache_path`` wins over
    ``cache_path``; ``None`` for ``backend = "none"``."""
    cfg = llm_config
    if cfg.backend == "none":
        return None
    if not cfg.model:
        raise UserError(f"llm.model must be set when llm.backend = {cfg.backend!r}")
    path = cfg.cache_path or cache_path
    if cfg.backend == "openai":
        from bailclio.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(
            cfg.model,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            max_concurrency=cfg.max_concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            max_calls=cfg.max_calls,
            max_total_tokens=cfg.max_total_tokens,
            cache=path,
            structured_output=cfg.structured_output,
            default_max_tokens=cfg.max_tokens,
            default_temperature=cfg.temperature,
            progress=progress,
        )
    if cfg.backend == "vllm":
        from bailclio.llm.vllm_backend import VLLMBackend

        return VLLMBackend(
            cfg.model,
            cache=path,
            max_calls=cfg.max_calls,
            max_total_tokens=cfg.max_total_tokens,
            structured_output=cfg.structured_output,
            default_max_tokens=cfg.max_tokens,
            default_temperature=cfg.temperature,
            progress=progress,
            engine_kwargs=dict(cfg.vllm_engine) or None,
        )
    raise UserError(f"llm.backend: unknown back-end {cfg.backend!r}")
