"""``bailclio eval RUNDIR --truth COLUMN``: score a taxonomy against known labels."""

from __future__ import annotations

import argparse
import json
import sys

from bailclio.commands.options import add_raw_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a taxonomy against known labels (AMI, NMI, ARI, purity, ...)",
        description=(
            "For each taxonomy level and truth column: AMI, NMI, ARI, V-measure, homogeneity, "
            "completeness, purity, Clio's reconstruction accuracy, number of clusters and outlier "
            "share. Every score is given twice, and each row says which: outliers as one cluster of "
            "their own (own, as a user sees them) and outliers attached to their nearest leaf "
            "(attached, the labels as assigned). --exclude-outliers scores without the outlier rows "
            "instead; --all prints all three."
        ),
    )
    p.add_argument("rundir")
    p.add_argument(
        "--truth",
        action="append",
        required=True,
        metavar="COLUMN",
        help="input column holding the true label (repeatable)",
    )
    p.add_argument("--exclude-outliers", action="store_true", help="only score without the outlier rows")
    p.add_argument("--all", action="store_true", help="outliers as own cluster, attached, and excluded")
    p.add_argument("--level", type=int, action="append", help="only this level (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.rundir import load_run
    from bailclio.taxonomy.evaluate import OUTLIER_MODES, evaluate_run, format_table

    run = load_run(args.rundir, curated=not args.raw)
    if args.all:
        modes = list(OUTLIER_MODES)
    else:
        modes = ["excluded"] if args.exclude_outliers else ["own", "attached"]
    rows = []
    for mode in modes:
        rows.extend(evaluate_run(run, args.truth, outliers=mode, levels=args.level))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows))
        n = len(run.assignments)
        share = rows[0]["outlier_share"] if rows else 0.0
        said = {
            "own": "own = outliers as one extra cluster",
            "attached": "attached = outliers in their nearest leaf",
            "excluded": "excluded = outlier rows left out",
        }
        print(
            f"\n{n} rows, {share:.1%} outliers; the outliers column says how they were scored: "
            + "; ".join(said[m] for m in modes)
            + "; recon = reconstruction accuracy (each cluster's majority label, every row scored)"
        )
    return 0
