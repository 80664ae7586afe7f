"""``bailclio run INPUT``: build a taxonomy from conversations into a run directory."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import polars as pl

from bailclio.commands.options import (
    add_config_option,
    add_input_options,
    add_llm_options,
    add_out_option,
    add_progress_option,
    llm_overrides,
)
from bailclio.config import load_config
from bailclio.datasets import bailbench_sample_path
from bailclio.errors import EXIT_INCOMPLETE, UserError
from bailclio.llm import preflight

EXIT_STATUSES = """exit status:
  0    the run is complete (manifest.json: status = "complete")
  2    bad input, option, config or output directory (one line on stderr; nothing replaced)
  3    the LLM server is unreachable (checked before any work) or kept failing during the LLM
       stage (stopped early; completed calls stay in the LLM cache, rerun to resume; nothing
       replaced)
  4    the run was written but part of the LLM stage failed (rows clustered on raw text, nodes
       with keyphrase names, budget reached): manifest.json status = "incomplete", reasons in
       its "incomplete" list and on stderr
  130  interrupted; the previous run at --out is left as it was
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="build a hierarchical taxonomy from conversations",
        description=(
            "Build a hierarchical taxonomy from conversations into a run directory. The run is "
            "built beside --out and takes its place only when complete."
        ),
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        nargs="*",
        help=(
            "input file (.jsonl .json .parquet .csv .tsv) or `bailclio detect` output folder; several "
            "give one taxonomy over their union, each row's input named in a 'source' column and its "
            "id prefixed '<source>:' (see docs/compare.md)"
        ),
    )
    p.add_argument(
        "--example",
        action="store_true",
        help="use the packaged 300-row BailBench sample as INPUT (bailclio.datasets)",
    )
    add_out_option(p, "run directory (default: runs/<input>-<time>)")
    add_config_option(p, "TOML config file (see docs/configuration.md)")
    add_input_options(p, limit=True)
    p.add_argument(
        "--shuffle",
        action="store_true",
        default=None,
        help="with --limit N: take N rows drawn at random (seeded by --seed), not the first N",
    )
    p.add_argument("--seed", type=int, help="random seed (default 42; 0 to 2**32-1)")
    p.add_argument("--embedding-model", help="sentence-transformers model name or local folder")
    p.add_argument("--min-cluster-size", type=int, help="HDBSCAN min_cluster_size (default from N)")
    p.add_argument(
        "--stability-refits",
        type=int,
        metavar="K",
        help="refits of the clustering that measure each node's stability (default 10; 0: none)",
    )
    p.add_argument("--n-top", type=int, help="number of top-level categories (default from leaves)")
    p.add_argument(
        "--levels", type=int, help="number of taxonomy levels, leaves included (default from leaves)"
    )
    g = add_llm_options(p, "LLM stage (facet summaries and names; see docs/llm-stage.md)")
    g.add_argument("--facet", help="facet whose summaries are clustered (default: from the input)")
    g.add_argument(
        "--llm-names-only",
        action="store_true",
        default=None,
        help="the LLM only names the nodes from the rows' texts: no facet call per row (docs/llm-names.md)",
    )
    s = p.add_argument_group("scale (fit on a sample, place the rest; see docs/scaling.md)")
    s.add_argument("--sample", type=int, help="fit on N rows when the input has more (default 20000; 0: all)")
    s.add_argument("--stratify", help="column whose values keep their share in the sample, e.g. model")
    s.add_argument("--chunk-rows", type=int, help="rows placed per chunk (default 10000)")
    s.add_argument("--engine", choices=("local", "ray"), help="where rows are embedded and placed")
    s.add_argument("--ray-address", help="Ray cluster (ray://host:10001; default RAY_ADDRESS, else local)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    add_progress_option(p)
    p.set_defaults(func=main)


def config_from_args(args: argparse.Namespace):
    overrides = {
        "input.text_column": args.text_column,
        "input.id_column": args.id_column,
        "input.limit": args.limit,
        "input.shuffle": args.shuffle,
        "seed": args.seed,
        "embedding.model": args.embedding_model,
        "cluster.min_cluster_size": args.min_cluster_size,
        "cluster.stability_refits": args.stability_refits,
        "hierarchy.n_top": args.n_top,
        "hierarchy.levels": args.levels,
        **llm_overrides(args),
        "llm.facet": args.facet,
        "llm.names_only": args.llm_names_only,
        "scale.fit_sample": args.sample,
        "scale.stratify": args.stratify,
        "scale.chunk_rows": args.chunk_rows,
        "scale.engine": args.engine,
        "scale.ray_address": args.ray_address,
    }
    return load_config(args.config, overrides)


def selection_line(selection: dict) -> str:
    """Which input rows the run took, in one line."""
    if selection.get("shuffle"):
        return (
            f"rows: {selection['taken']} of {selection['records_in_input']} drawn at random "
            f"(--shuffle, seed {selection['seed']}; record numbers in manifest.json input.selection)"
        )
    return f"rows: the first {selection['taken']} (--limit {selection['limit']}; --shuffle draws at random)"


def _clustered_on(llm: dict) -> str:
    space = (llm.get("clustering") or {}).get("clustered_on", "facet")
    if space == "facet":
        return f"clustered on facet '{llm['facet']}'"
    if space == "mixed":
        return f"clustered on facet '{llm['facet']}' and, where it is missing, the text"
    if space == "text_and_facet":
        return f"clustered on the text plus facet '{llm['facet']}'"
    return "clustered on the rendered text"


def resolve_input(args: argparse.Namespace) -> None:
    """``--example`` stands for the packaged sample; exactly one of INPUT and ``--example``."""
    if args.example and args.input:
        raise UserError("give INPUT or --example, not both")
    if args.example:
        args.input = [str(bailbench_sample_path())]
    elif not args.input:
        raise UserError("INPUT is required (or --example for the packaged BailBench sample)")


def main(args: argparse.Namespace) -> int:
    from bailclio.outputs import check_output_dir
    from bailclio.pipeline import run
    from bailclio.rundir import Run
    from bailclio.tree import print_summary, print_tree

    resolve_input(args)
    cfg = config_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    first = Path(args.input[0])
    more = f"-and-{len(args.input) - 1}-more" if len(args.input) > 1 else ""
    out = args.out or f"runs/{first.stem}{more}-{datetime.now():%Y%m%d-%H%M%S}"
    from bailclio.pipeline import input_files

    inputs = input_files(args.input)  # a missing file, a folder that is no detect output: one line
    check_output_dir(out, args.force, inputs=inputs)
    if cfg.llm.backend != "none":
        try:
            cfg.cluster_facet()  # config mistakes are reported before the server is asked
        except ValueError as exc:
            raise UserError(f"config: {exc}") from exc

        preflight(cfg.llm)  # an unreachable LLM server is an error before any work
    result = run(inputs, out, cfg, force=args.force, progress=not args.quiet)
    # the tree needs the taxonomy and the row count, not the conversations' texts
    run = Run(result.path, result.manifest, pl.DataFrame(), result.assignments, result.taxonomy)
    print_tree(run, depth=2, file=sys.stdout)
    print_summary(result.manifest, result.path, file=sys.stdout)
    selection = result.manifest.get("input", {}).get("selection")
    if selection:
        print(selection_line(selection), file=sys.stdout)
    llm = result.manifest.get("llm")
    if llm:
        t = llm["total"]
        print(
            f"LLM {llm['model']}: {t['calls']} calls, {t['cache_hits']} cache hits, "
            f"{t['failures']} failures, {t['prompt_tokens']} prompt + {t['completion_tokens']} "
            f"completion tokens; {_clustered_on(llm)}"
            + (" (budget reached)" if llm["budget_exhausted"] else ""),
            file=sys.stdout,
        )
        for warning in llm.get("warnings", []):
            print(f"warning: {warning}", file=sys.stdout)
    incomplete = result.manifest.get("incomplete") or []
    if incomplete:
        print(f"status: INCOMPLETE run written to {result.path}: " + "; ".join(incomplete), file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
