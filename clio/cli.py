"""The ``bailclio`` command line: a thin dispatcher over ``bailclio.commands.*`` modules."""

from __future__ import annotations

import argparse
import importlib
import sys

from bailclio import __version__
from bailclio.errors import UserError

# Each name is a module in clio/commands exposing ``register(subparsers)``.
COMMANDS = ("run", "show", "explore", "export", "assign", "diff", "eval", "detect")


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
