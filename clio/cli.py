"""The ``bailclio`` command line: a thin dispatcher over ``bailclio.commands.*`` modules."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from bailclio import __version__
from bailclio.errors import UserError

# Each name is a module in clio/commands exposing ``register(subparsers)``.
COMMANDS = ("run", "show", "explore", "export", "assign", "diff", "eval", "detect")


def ensure_numba_cache() -> None:
    """Keep numba's compiled functions on disk so only the first run ever pays for compiling."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        from bailclio.paths import cache_root

        path = cache_root("numba")
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)


def configure_logging(level: int = logging.INFO) -> None:
    """The library's messages (stage progress, warnings) go to stderr as plain lines."""
    logger = logging.getLogger("bailclio")
    if not any(getattr(h, "_bailclio_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()  # stderr, looked up when each line is written
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._bailclio_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bailclio",
        description="Discover the taxonomy of situations in which language models bail.",
    )
    parser.add_argument("--version", action="version", version=f"bailclio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bailclio.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bailclio.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging()
    ensure_numba_cache()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"bailclio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
