"""LLM back-ends (OpenAI-compatible HTTP, in-process vLLM) behind one small interface.

``make_backend(config.llm, run_dir / "llm_cache.sqlite")`` gives the configured back-end (or
``None`` when ``llm.backend = "none"``); every back-end returns :class:`ChatResult` per
:class:`ChatRequest`, caches completed calls on disk and reports counters through ``stats()``.

Back-ends are found by name in a registry: ``openai`` and ``vllm`` are built in,
:func:`register_backend` adds one in-process, and an installed package adds one through the
``bailclio.backends`` entry-point group (:mod:`bailclio.plugins`). A factory is called as
``factory(llm_config, cache_path, progress=...)`` and returns an :class:`LLMBackend`::

    >>> from bailclio.config import LLMConfig
    >>> register_backend("echo-test", lambda cfg, cache, progress=True: ("echo", cfg.model))
    >>> make_backend(LLMConfig(backend="echo-test", model="m"), None)
    ('echo', 'm')
    >>> "echo-test" in backend_names()
    True
    >>> unregister_backend("echo-test")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bailclio.errors import UserError
from bailclio.llm.base import ChatRequest, ChatResult, Choice, LLMBackend, ToolCall

if TYPE_CHECKING:
    from bailclio.config import LLMConfig

__all__ = [
    "ChatRequest",
    "ChatResult",
    "Choice",
    "LLMBackend",
    "ToolCall",
    "backend_factory",
    "backend_names",
    "make_backend",
    "preflight",
    "register_backend",
]

ENTRY_POINT_GROUP = "bailclio.backends"
BackendFactory = Callable[..., Any]  # (llm_config, cache_path, *, progress) -> LLMBackend


def _openai(cfg: LLMConfig, path: str | Path | None, *, progress: bool = True) -> LLMBackend:
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
        max_tokens_param=cfg.max_tokens_param,
        default_max_tokens=cfg.max_tokens,
        default_temperature=cfg.temperature,
        progress=progress,
        breaker_window=cfg.breaker_window,
        breaker_threshold=cfg.breaker_threshold,
    )


def _openai_preflight(cfg: LLMConfig) -> None:
    from bailclio.llm.server_check import check_server

    assert cfg.model is not None
    check_server(
        cfg.base_url,
        cfg.model,
        api_key_env=cfg.api_key_env,
        timeout_s=cfg.preflight_timeout_s,
        wait_s=cfg.preflight_wait_s,
        max_tokens_param=cfg.max_tokens_param,
    )


# back-ends served over the network, checked before any work by :func:`preflight`
_PREFLIGHTS: dict[str, Callable[[LLMConfig], None]] = {"openai": _openai_preflight}


def preflight(llm_config: LLMConfig) -> None:
    """Check that the configured back-end's server answers a chat request with a JSON chat
    completion, before any work: raises :class:`~bailclio.errors.LLMUnavailable` (one line naming
    the URL and the error) when it does not; waits up to ``llm.preflight_wait_s`` for a server
    still loading its model (HTTP 503). In-process back-ends (vllm, plugins) and
    ``llm.preflight = false`` are not checked."""
    cfg = llm_config
    if cfg.backend == "none" or not cfg.preflight or not cfg.model:
        return
    check = _PREFLIGHTS.get(cfg.backend)
    if check is not None:
        check(cfg)


def _vllm(cfg: LLMConfig, path: str | Path | None, *, progress: bool = True) -> LLMBackend:
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


_BACKENDS: dict[str, BackendFactory] = {"openai": _openai, "vllm": _vllm}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``llm.backend = name`` build its back-end with ``factory``."""
    if name == "none":
        raise ValueError("'none' means no back-end and cannot be registered")
    _BACKENDS[name] = factory


def unregister_backend(name: str) -> None:
    _BACKENDS.pop(name, None)


def backend_names() -> list[str]:
    """Every back-end name: built in, registered, installed as an entry point."""
    from bailclio.plugins import entry_point_names

    return list(dict.fromkeys([*_BACKENDS, *entry_point_names(ENTRY_POINT_GROUP)]))


def backend_factory(name: str) -> BackendFactory:
    """The factory for back-end ``name``; a clear error for a name nobody provides."""
    if name not in _BACKENDS:
        from bailclio.plugins import load_entry_point

        factory = load_entry_point(ENTRY_POINT_GROUP, name)
        if factory is None:
            raise UserError(
                f"llm.backend: unknown back-end {name!r} (known: none, {', '.join(backend_names())})"
            )
        _BACKENDS[name] = factory
    return _BACKENDS[name]


def make_backend(
    llm_config: LLMConfig, cache_path: str | Path | None, *, progress: bool = True
) -> LLMBackend | None:
    """The back-end named by ``llm_config.backend``; ``llm_config.cache_path`` wins over
    ``cache_path``; ``None`` for ``backend = "none"``."""
    cfg = llm_config
    if cfg.backend == "none":
        return None
    factory = backend_factory(cfg.backend)
    if not cfg.model:
        raise UserError(f"llm.model must be set when llm.backend = {cfg.backend!r}")
    return factory(cfg, cfg.cache_path or cache_path, progress=progress)
