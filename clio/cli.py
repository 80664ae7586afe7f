"""The ``bailclio`` command line: a thin dispatcher over ``bailclio.commands.*`` modules."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Iterator

from bailclio import __version__
from bailclio.errors import LLMUnavailable, UserError
from bailclio.paths import cache_root
from bailclio.provenance import portable_numerics

# Each name is a module in clio/commands exposing ``register(subparsers)``.
COMMANDS = ("run", "show", "explore", "export", "assign", "diff", "compare", "eval", "detect", "report")


def ensure_numba_cache() -> None:
    """Keep numba's compiled functions on disk so only the first run ever pays for compiling."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        path = cache_root("numba")
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)


def pin_numerics() -> None:
    """Before numpy, torch or numba load: the portable numeric settings, where the environment
    has not chosen (see :data:`bailclio.provenance.PORTABLE_NUMERICS`)."""
    for key, value in portable_numerics().items():
        os.environ.setdefault(key, value)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is written (redirections are followed)."""

    _bailclio_cli = True

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[None]:
    """While a command runs, the library's messages (stage progress, warnings) go to stderr as
    plain lines; the logger is left as it was afterwards."""
    logger = logging.getLogger("bailclio")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


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
    pin_numerics()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    ensure_numba_cache()
    try:
        with cli_logging():
            return int(args.func(args) or 0)
    except LLMUnavailable as exc:
        hint = ""
        if exc.resumable:
            hint = (
                " (resume with: " + shlex.join(["bailclio", *(sys.argv[1:] if argv is None else argv)]) + ")"
            )
        print(f"bailclio {args.command}: error: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"bailclio {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path the file system refuses (unwritable --out, full disk, ...)
        if exc.filename is None:  # e.g. a write to an already open file on a full disk
            print(f"bailclio {args.command}: error: {exc.strerror or exc}", file=sys.stderr)
        else:
            print(f"bailclio {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
