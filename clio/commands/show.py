"""``bailclio show RUNDIR``: print the taxonomy tree with sizes and shares."""

from __future__ import annotations

import argparse
import sys

from bailclio.commands.options import add_raw_option
from bailclio.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="print a run's taxonomy tree",
        description="Print a run's taxonomy tree with sizes and shares.",
    )
    p.add_argument("rundir")
    p.add_argument("--depth", type=int, default=None, help="levels to print (default: all)")
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.rundir import load_run
    from bailclio.tree import print_summary, print_tree

    if args.depth is not None and args.depth < 1:
        raise UserError("--depth must be at least 1")
    run = load_run(args.rundir, curated=not args.raw)
    print_tree(run, depth=args.depth, file=sys.stdout)
    print_summary(run.manifest, run.path, file=sys.stdout, taxonomy=run.taxonomy)
    return 0
