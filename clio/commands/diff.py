"""``bailclio diff RUN_A RUN_B``: match two taxonomies' categories and compare their shares."""

from __future__ import annotations

import argparse
import json
import sys

from bailclio.commands.options import add_raw_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two taxonomies: matched categories, share changes, new and gone",
        description=(
            "Match the categories of two runs (names and centroid embeddings, one-to-one) and print "
            "each matched category's share in A and B with 95%% Wilson intervals and the change, "
            "plus the categories only in A or only in B. A side may also be an assign output file "
            "(e.g. RUNDIR/assign-new.parquet): its taxonomy is that run's, its shares its rows'."
        ),
    )
    p.add_argument("a", metavar="RUN_A", help="run directory or assign output file")
    p.add_argument("b", metavar="RUN_B", help="run directory or assign output file")
    p.add_argument("--level", type=int, default=0, help="taxonomy level to compare (default 0 = top)")
    p.add_argument(
        "--threshold", type=float, default=0.35, help="least combined similarity of a match (default 0.35)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the largest changes")
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.taxonomy.diff import diff_sides, format_table, load_side, plot

    a = load_side(args.a, args.level, curated=not args.raw)
    b = load_side(args.b, args.level, curated=not args.raw)
    result = diff_sides(a, b, args.level, args.threshold)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(format_table(result))
    if args.plot:
        path = plot(result, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    return 0
