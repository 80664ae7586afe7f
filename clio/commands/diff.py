"""``bailclio diff RUN_A RUN_B``: how shares moved from A to B, on A's taxonomy, beyond noise."""

from __future__ import annotations

import argparse
import json
import sys

from bailclio.commands.options import add_raw_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two runs on one taxonomy: share changes with intervals and tests",
        description=(
            "Place A's and B's rows in A's taxonomy (the placement of `assign`) and print, for each "
            "node of the level, both shares with 95% Wilson intervals, the change with its 95% "
            "Newcombe interval and a test per node (chi-square or Fisher; Benjamini-Hochberg "
            "q <= 0.05 is significant). Then B's own nodes matched to A's (names and centroid embeddings, "
            "one-to-one): low-similarity matches are marked uncertain, never a change. A side may "
            "also be an assign output file (e.g. RUNDIR/assign-new.parquet). See docs/diff.md."
        ),
    )
    p.add_argument("a", metavar="RUN_A", help="run directory or assign output file")
    p.add_argument("b", metavar="RUN_B", help="run directory or assign output file")
    p.add_argument("--level", type=int, default=0, help="taxonomy level to compare (default 0 = top)")
    p.add_argument(
        "--threshold", type=float, default=0.35, help="least combined similarity of a match (default 0.35)"
    )
    p.add_argument(
        "--uncertain-below",
        type=float,
        default=0.6,
        metavar="S",
        help="matches less similar than S are reported as uncertain (default 0.6)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (docs/diff.md)")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the largest changes with intervals")
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.outputs import check_output_file
    from bailclio.taxonomy.diff import diff_runs
    from bailclio.taxonomy.diff_report import format_table, plot

    if args.plot:  # checked before any work: never an input run's own file, a device or a link's
        check_output_file(args.plot, inputs=[args.a, args.b])
    result = diff_runs(
        args.a,
        args.b,
        args.level,
        threshold=args.threshold,
        uncertain_below=args.uncertain_below,
        curated=not args.raw,
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        print()
    else:
        print(format_table(result))
    if args.plot:
        path = plot(result, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    return 0
