"""``bailclio export RUNDIR --format F``: write a run's labels as BailBench CSV or a full table, or
the taxonomy as a static site (``--format site --out DIR``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bailclio.commands.options import add_out_option, add_raw_option
from bailclio.errors import UserError

if TYPE_CHECKING:
    from bailclio.rundir import Run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's labels (BailBench CSV, CSV, JSONL, Parquet) or a static site",
        description=(
            "Write one row per conversation with its taxonomy labels. 'bailbench' writes exactly "
            "BailBench's columns content,subcategory,category (category = top-level name, "
            "subcategory = leaf or --level name); csv/jsonl/parquet write conversation_id, every "
            "level's node id and name, is_outlier and the input's preserved columns. 'site' writes a "
            "folder (index.html and assets) that shows the taxonomy in any browser, from file:// "
            "or any static host, with no server and no request leaving the page."
        ),
    )
    p.add_argument("rundir")
    p.add_argument("--format", required=True, choices=("bailbench", "csv", "jsonl", "parquet", "site"))
    add_out_option(p, "output file, or folder for site (default: RUNDIR/export-<format>.<ext>, RUNDIR/site)")
    p.add_argument(
        "--level",
        type=int,
        help="deepest level to export (0 = top); for bailbench, the level named in subcategory",
    )
    p.add_argument(
        "--min-cluster-size",
        type=int,
        metavar="K",
        help="leave out nodes with fewer than K conversations (and their rows), for privacy",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="site: write into a non-empty folder that is not a previous site (other files are kept)",
    )
    p.add_argument(
        "--compare-by",
        metavar="COLUMN",
        help=(
            "add each row's node's share of every group of COLUMN with its 95%% interval, and the "
            "node's q and significance (bailclio compare at the deepest exported level)"
        ),
    )
    add_raw_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bailclio.outputs import check_output_file
    from bailclio.rundir import load_run
    from bailclio.taxonomy.export import default_out, export_frame, write_frame

    run = load_run(args.rundir, curated=not args.raw)
    if args.format == "site":
        return export_site(run, args)
    frame, dropped = export_frame(
        run,
        args.format,
        level=args.level,
        min_cluster_size=args.min_cluster_size,
        compare_by=args.compare_by,
    )
    out = Path(args.out) if args.out else default_out(run, args.format, args.level)
    check_output_file(out, inputs=[run.path])
    write_frame(frame, args.format, out)
    if args.min_cluster_size:
        print(dropped.summary(), file=sys.stderr)
    print(
        f"wrote {frame.height} rows ({args.format}) to {out}"
        + (f"; {dropped.rows} rows in {len(dropped.nodes)} small nodes left out" if dropped.nodes else "")
    )
    return 0


def export_site(run: Run, args: argparse.Namespace) -> int:
    from bailclio.taxonomy.site import write_site

    if args.level is not None or args.min_cluster_size is not None:
        raise UserError("--level and --min-cluster-size apply to the table formats, not to --format site")
    out = Path(args.out) if args.out else run.path / "site"
    result = write_site(run, out, force=args.force)
    where = "into the existing folder " if result.into_existing else ""
    print(
        f"wrote a static site of {result.nodes} nodes and {result.texts} texts {where}{out} "
        f"(open {out / 'index.html'})"
    )
    return 0
