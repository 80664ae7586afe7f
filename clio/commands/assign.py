"""``bailclio assign RUNDIR NEW_INPUT``: label new conversations with an existing taxonomy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bailclio.commands.options import (
    add_config_option,
    add_input_options,
    add_llm_options,
    add_out_option,
    add_progress_option,
    add_raw_option,
    llm_overrides,
)
from bailclio.config import load_config
from bailclio.errors import UserError
from bailclio.llm import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "assign",
        help="label new conversations with an existing taxonomy",
        description=(
            "Embed NEW_INPUT with the run's embedding model and place each row in the run's "
            "taxonomy by a similarity-weighted vote of its k nearest run rows (or the nearest leaf "
            "centroid). Rows that fit no leaf are left unassigned rather than forced into one: those "
            "whose mean cosine distance to their k nearest run rows is beyond the Q-quantile of the "
            "same distance for the run's own rows (so about Q of rows like the run's are placed, "
            "while off-topic text is refused); the summary gives both rates. With --llm, an LLM "
            "picks each row's leaf from a shortlist of the leaves the embedding placement proposes "
            "(names and descriptions), or says none; a failed call keeps the embedding placement."
        ),
    )
    p.add_argument("rundir")
    p.add_argument("new_input", help="input file: .jsonl .json .parquet .csv .tsv")
    add_out_option(p, "output .parquet or .csv (default: RUNDIR/assign-<input>.parquet)")
    p.add_argument(
        "--threshold-quantile",
        type=float,
        default=0.95,
        metavar="Q",
        help="unassigned beyond the Q-quantile of the run's own kNN distances (default 0.95; 1 = never)",
    )
    p.add_argument("--method", choices=("knn", "centroid"), default="knn", help="placement (default knn)")
    p.add_argument("-k", "--neighbors", type=int, default=10, help="neighbours for knn (default 10)")
    p.add_argument("--embedding-model", help="must be the run's embedding model (checked)")
    add_input_options(p)
    add_raw_option(p)
    add_progress_option(p)
    g = add_llm_options(p, "LLM classification (see docs/llm-stage.md)")
    add_config_option(g, "TOML config file whose [llm] section is used")
    g.add_argument(
        "--shortlist", type=int, default=6, metavar="N", help="leaves offered to the LLM per row (default 6)"
    )
    p.set_defaults(func=main)


def llm_config(args: argparse.Namespace):
    """The LLM settings from --config and the flags, or None when no back-end is asked for."""
    overrides = llm_overrides(args)
    cfg = load_config(args.config, overrides)
    if cfg.llm.backend == "none":
        return None
    if not cfg.llm.model:  # before any embedding work
        raise UserError(f"--llm {cfg.llm.backend} needs --model (llm.model must be set)")
    return cfg


def main(args: argparse.Namespace) -> int:
    from bailclio.outputs import check_output_file
    from bailclio.rundir import load_run
    from bailclio.taxonomy.assign import assign_input
    from bailclio.taxonomy.assign_output import default_out, print_summary, write_output

    if args.neighbors < 1:
        raise UserError("--neighbors must be at least 1")
    if args.shortlist < 1:
        raise UserError("--shortlist must be at least 1")
    cfg = llm_config(args)
    run = load_run(args.rundir, curated=not args.raw)
    out = Path(args.out) if args.out else default_out(run, args.new_input)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UserError(f"{out}: output must end in .parquet or .csv")
    if not Path(args.new_input).exists():
        raise UserError(f"{args.new_input}: no such file")
    check_output_file(out, inputs=[run.path, args.new_input])
    check_output_file(out.with_name(f"{out.stem}.rejects.jsonl"), inputs=[run.path, args.new_input])
    if cfg is not None:
        preflight(cfg.llm)  # an unreachable server: one line before any embedding
    result = assign_input(
        run,
        args.new_input,
        method=args.method,
        k=args.neighbors,
        quantile=args.threshold_quantile,
        embedding_model=args.embedding_model,
        text_column=args.text_column,
        id_column=args.id_column,
        progress=not args.quiet,
        llm_config=cfg,
        shortlist=args.shortlist,
    )
    if result.rejects:
        from bailclio.ingest import Ingested

        rej = out.with_name(f"{out.stem}.rejects.jsonl")
        Ingested(frame=result.frame, rejects=result.rejects).write_rejects(rej)
        print(f"{len(result.rejects)} input rows rejected; reasons in {rej}", file=sys.stderr)
    write_output(result.frame, out, run, result.embed_stats["model_key"])
    print_summary(run, result, out)
    return 0
