"""``bailclio report DETECT_DIR... [--run RUNDIR] --out report.html``: the study's figures.

    bailclio report detect-qwen detect-gemma --run run-bails --out report.html

One self-contained HTML page (no script, nothing loaded from the network, figures embedded):
bail rate per method and prompt order per model, refusal rate and no-refusal bail rate with 95%
Wilson intervals, the refusal x bail table, and with ``--run`` each top category's share of each
model's bails. The numbers are written beside it as CSV (report.csv for report.html).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="the study's figures for detect folders (and a run) as one HTML page + CSV",
        description=(
            "Write one self-contained HTML page with bail, refusal and no-refusal bail rates per "
            "method, prompt order and model (95%% Wilson intervals), the refusal x bail table and, "
            "with --run, each top category's share per model; the numbers go beside it as CSV."
        ),
    )
    p.add_argument("detect_dirs", nargs="+", metavar="DETECT_DIR", help="bailclio detect output folders")
    p.add_argument("--run", metavar="RUNDIR", help="a run over the bails, for the category shares")
    p.add_argument("--out", default="report.html", help="the HTML page (default report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # polars and matplotlib load when the command runs, so that --help stays fast
    from bailclio.report.page import write_report

    result = write_report(args.detect_dirs, args.out, args.run)
    print(f"wrote {result['html']} and {result['csv']} ({result['rows']} rows)")
    return 0
