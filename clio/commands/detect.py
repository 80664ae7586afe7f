"""``bailclio detect``: find where a model bails, producing the input of ``bailclio run``.

    bailclio detect data/wildchat_1880.jsonl --model Qwen/Qwen2.5-7B-Instruct \\
        --llm openai --base-url http://127.0.0.1:8000/v1 --methods prompt,string,tool --journal

Writes ``DIR/detections.parquet`` (one row per conversation, turn, method and prompt order),
``DIR/bails.parquet`` (one row per bailed conversation turn, the transcript cut after the reply
the model bailed after: ``bailclio run DIR/bails.parquet`` clusters it), ``DIR/summary.json`` and
``DIR/rejects.jsonl``; prints bail rates with 95% Wilson intervals. See
:mod:`bailclio.detect.runner` for the call model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bailclio import atomic
from bailclio.commands.options import (
    add_config_option,
    add_input_options,
    add_llm_options,
    add_out_option,
    add_progress_option,
    llm_overrides,
)
from bailclio.config import load_config
from bailclio.errors import UserError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "detect",
        help="find where a model bails (bail prompt, bail string, bail tool)",
        description=(
            "Measure where a model chooses to leave conversations with the study's three "
            "methods, and write the bailed conversations for `bailclio run`."
        ),
    )
    p.add_argument("input", help="conversations (.jsonl/.json/.parquet/.csv/.tsv)")
    add_llm_options(
        p,
        "the model under test",
        with_none=False,
        default_help="default openai",
        model_help="the model under test (default: llm.model of --config)",
    )
    add_out_option(p, "output directory (default: detect-<input stem>)")
    add_config_option(p, "TOML configuration (llm and input sections are used)")
    add_input_options(p, limit=True)
    add_progress_option(p)
    p.add_argument(
        "--methods",
        default="prompt,string,tool",
        help="comma list of prompt, string, tool (default: all three)",
    )
    p.add_argument("--turns", choices=("last", "all"), default="last", help="turns to score")
    p.add_argument(
        "--replies",
        choices=("regenerate", "keep"),
        default="regenerate",
        help="the model writes its own replies (default) or the existing ones are kept",
    )
    p.add_argument("--samples", type=int, default=10, help="samples per prompt order without logprobs")
    p.add_argument(
        "--scoring",
        choices=("auto", "logprobs", "samples", "sequence"),
        default="auto",
        help=(
            "prompt-method scoring (auto: logprobs where the server returns them, rescored by "
            "sequence where the symbols' byte pieces cannot be told apart; sequence: 2 calls per "
            "order with vLLM prompt_logprobs, exact for any tokenization)"
        ),
    )
    p.add_argument("--threshold", type=float, default=0.5, help="bail when P(bail) > this")
    p.add_argument("--model-label", help="the model's own name in the protocol texts ({model})")
    p.add_argument("--journal", action="store_true", help="generate journals for prompt bails")
    p.add_argument(
        "--flag-false-bails",
        action="store_true",
        help="flag the two known false-bail patterns on bails.parquet with an LLM judge",
    )
    p.add_argument(
        "--judge-model", help="model for --flag-false-bails and --refusal judge (default: --model)"
    )
    p.add_argument(
        "--refusal",
        choices=("lexical", "classifier", "judge", "none"),
        default="lexical",
        help=(
            "how each scored reply's P(refuse) is measured: refusal phrases (default, no model), "
            "a Hugging Face classifier (--refusal-model), the LLM judge, or not at all"
        ),
    )
    p.add_argument(
        "--refusal-model",
        metavar="PATH_OR_NAME",
        help="sequence-classification model for --refusal classifier (e.g. NousResearch/Minos-v1)",
    )
    p.add_argument("--refusal-threshold", type=float, default=0.5, help="refused when P(refuse) > this")
    p.add_argument("--refusal-batch-size", type=int, default=16, help="classifier batch size")
    p.add_argument(
        "--prefix",
        metavar="FILE",
        help=(
            "JSON list (or JSONL) of user/assistant messages put before every conversation, "
            "after its system prompt (e.g. a jailbreak and a model reply)"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the detect modules and polars load when the command runs, so that --help stays fast
    from bailclio.detect.runner import DetectOptions, rates_table, run_detect
    from bailclio.outputs import check_detect_dir

    src = Path(args.input)
    if not src.exists():
        raise UserError(f"{src}: no such file")
    overrides: dict[str, Any] = {
        **llm_overrides(args),
        "input.text_column": args.text_column,
        "input.id_column": args.id_column,
        "input.limit": args.limit,
    }
    config = load_config(args.config, overrides)
    if config.llm.backend == "none":
        config = config.model_copy(update={"llm": config.llm.model_copy(update={"backend": "openai"})})
    if not config.llm.model:
        raise UserError("--model is required (the model under test)")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    options = DetectOptions(
        model=config.llm.model,
        methods=methods,
        turns=args.turns,
        replies=args.replies,
        samples=args.samples,
        threshold=args.threshold,
        model_label=args.model_label,
        journal=args.journal,
        flag_false_bails=args.flag_false_bails,
        scoring=args.scoring,
        reply_max_tokens=config.llm.max_tokens,
        reply_temperature=config.llm.temperature,
        seed=config.seed,
        refusal=args.refusal,
        refusal_model=args.refusal_model,
        refusal_threshold=args.refusal_threshold,
        refusal_batch_size=args.refusal_batch_size,
        prefix=args.prefix,
    )
    out = check_detect_dir(Path(args.out) if args.out else Path(f"detect-{src.stem}"), inputs=[src])
    try:
        with atomic.locked(out):
            summary = run_detect(
                src,
                out,
                config,
                options,
                judge_model=args.judge_model,
                progress=not args.quiet,
            )
    except atomic.Busy as exc:
        raise UserError(f"{out}: another bailclio process is writing there; try again later") from exc
    print(rates_table(summary["rates"]))
    counts = summary["counts"]
    calls = summary["calls"]
    print(
        f"\n{counts['scored_turns']} scored turns in {counts['conversations']} conversations, "
        f"{counts['bails']} bailed turns, {counts['detection_errors']} failed rows, "
        f"{counts['rejected']} rejected input rows; {calls['requests']} requests "
        f"({calls['backend'].get('calls', 0)} HTTP calls, "
        f"{calls['backend'].get('cache_hits', 0)} from cache), "
        f"{summary['tokens']['prompt'] + summary['tokens']['completion']} tokens, "
        f"{summary['timings']['total_s']:.1f}s"
    )
    if summary.get("false_bails"):
        fb = summary["false_bails"]
        print(f"false bails flagged: {fb['false_bails']} of {fb['judged']}")
    ref = summary.get("refusal") or {}
    if ref.get("method") not in (None, "none"):
        print(
            f"refusal ({ref['method']}): {ref['replies_scored']} replies scored, "
            f"{ref['failures']} could not be scored"
        )
    if summary.get("budget_exhausted"):
        print("budget exhausted: rows not run are marked error='budget'", file=sys.stderr)
    print(f"wrote {out}/detections.parquet, {out}/bails.parquet, {out}/summary.json")
    return 0
