"""The options several commands share, spelled once: the LLM back-end, progress, output, input
columns and the config file."""

from __future__ import annotations

import argparse
from typing import Any

from bailclio.llm import backend_names


def backend_choices(*, with_none: bool = True) -> list[str]:
    """``none`` (when allowed) and every back-end: built in, registered, installed."""
    return (["none"] if with_none else []) + backend_names()


def add_llm_options(
    p: argparse.ArgumentParser,
    title: str,
    *,
    with_none: bool = True,
    default_help: str = "default none",
    model_help: str = "model name on the server, or a local folder for --llm vllm",
) -> argparse._ArgumentGroup:
    """``--llm --base-url --model --max-concurrency --max-calls --llm-cache`` in a group."""
    g = p.add_argument_group(title)
    g.add_argument(
        "--llm", choices=backend_choices(with_none=with_none), help=f"LLM back-end ({default_help})"
    )
    g.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help=model_help)
    g.add_argument("--max-concurrency", type=int, help="LLM requests in flight (default 16)")
    g.add_argument("--max-calls", type=int, help="stop making LLM calls after N (budget)")
    g.add_argument("--llm-cache", help="LLM cache file (default ~/.cache/bailclio/llm/...)")
    return g


def llm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides the LLM options give (None where a flag is not set)."""
    return {
        "llm.backend": args.llm,
        "llm.base_url": args.base_url,
        "llm.model": args.model,
        "llm.max_concurrency": args.max_concurrency,
        "llm.max_calls": args.max_calls,
        "llm.cache_path": args.llm_cache,
    }


def add_progress_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--quiet`` (alias ``--no-progress``): no progress bars or stage lines; sets ``args.quiet``."""
    p.add_argument(
        "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars or stage lines"
    )


def add_input_options(p: argparse.ArgumentParser, *, limit: bool = False) -> None:
    p.add_argument("--text-column", help="column holding the text or the conversation")
    p.add_argument("--id-column", help="column holding a unique id")
    if limit:
        p.add_argument("--limit", type=int, help="read at most N input rows")


def add_out_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--out", help=help)


def add_config_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str) -> None:
    p.add_argument("--config", help=help)


def add_raw_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", action="store_true", help="ignore curation.json edits")
