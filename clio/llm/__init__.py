"""LLM back-ends (OpenAI-compatible HTTP, in-process vLLM) behind one small interface.

``make_backend(config.llm, run_dir / "llm_cache.sqlite")`` gives the configured back-end (or
``None`` when ``llm.backend = "none"``); every back-end returns :class:`ChatResult` per
:class:`ChatRequest`, caches completed calls on disk and reports counters through ``stats()``.

Back-ends are found by name in the registry ``bailclio.plugins.BACKENDS``: ``openai`` and
``vllm`` are built in, :func:`register_backend` adds one in-process, and an installed package adds
one through the ``bailclio.backends`` entry-point group (:mod:`bailclio.plugins`). A factory is called as
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
from bailclio.plugins import BACKENDS, load_target

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

ENTRY_POINT_GROUP = BACKENDS.group
BackendFactory = Callable[..., Any]  # (llm_config, cache_path, *, progress) -> LLMBackend

# The built-in back-ends, imported when first used (their client libraries are heavy).
BACKENDS.register("openai", "bailclio.llm.openai_backend:from_config")
BACKENDS.register("vllm", "bailclio.llm.vllm_backend:from_config")

# back-ends served over the network, checked before any work by :func:`preflight`
_PREFLIGHTS: dict[str, str] = {"openai": "bailclio.llm.server_check:check_config"}


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
        load_target(check)(cfg)


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Make ``llm.backend = name`` build its back-end with ``factory`` (or ``"module:attr"``);
    the same as ``bailclio.plugins.BACKENDS.register``."""
    BACKENDS.register(name, factory)


def unregister_backend(name: str) -> None:
    BACKENDS.unregister(name)


def backend_names() -> list[str]:
    """Every back-end name: built in, registered, installed as an entry point."""
    return BACKENDS.names()


def backend_factory(name: str) -> BackendFactory:
    """The factory for back-end ``name``; a clear error for a name nobody provides."""
    try:
        return BACKENDS.get(name)
    except UserError as exc:
        raise UserError(f"llm.backend: {exc}") from None


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
