"""``bailclio compare RUNDIR --by COLUMN``: each node's share of every group, with intervals, and
which nodes the groups differ on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bailclio.commands.options import add_raw_option
from bailclio.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare groups of rows (model, source, ...) on one taxonomy, node by node",
        description=(
            "For every node at --level and every group of --by (a column of the run's input, e.g. "
            "model, source, bail_method, refused): the group's rows in the node, their share of the "
            "group and its 95%% Wilson interval, and per node whether the groups differ there: "
            "p-values adjusted by Benjamini-Hochberg, q <= 0.05 marked significant. Below the top "
            "level, nodes are tested among their siblings under the parents where the groups "
            "differ (docs/compare.md)."
        ),
    )
    p.add_argument("rundir")
    p.add_argument("--by", required=True, metavar="COLUMN", help="the column whose values are the groups")
    p.add_argument("--level", type=int, default=0, help="taxonomy level to compare (default 0 = top)")
    p.add_argument(
        "--reference",
        choices=("typical", "all"),
        default="typical",
        help=(
            "typical (default): test each node's mix of groups against the mix in the nodes where "
            "the groups do not differ (a category one group alone has then does not flag every "
            "other node through dilution); all: test each node's groups x in/out table"
        ),
    )
    p.add_argument(
        "--testing",
        choices=("hierarchical", "flat"),
        default="hierarchical",
        help=(
            "hierarchical (default): below the top, nodes are tested among their siblings under "
            "the parents where the groups differ; flat: the level's nodes as one family"
        ),
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="each node's share per group with its interval")
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.outputs import check_output_file
    from bailclio.rundir import load_run
    from bailclio.taxonomy.compare import compare_groups, format_table, plot

    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise UserError(f"--plot {args.plot}: give a .png file")
    run = load_run(args.rundir, curated=not args.raw)
    if args.plot:  # checked before any work: never an input run's own file, a device or a link's
        check_output_file(args.plot, inputs=[run.path])
    result = compare_groups(run, args.by, args.level, reference=args.reference, testing=args.testing)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        print(format_table(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
