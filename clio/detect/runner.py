"""Find where a model bails: build the protocol requests, run them on a back-end, decide, record.

The call model
--------------
Turns are user turns: turn ``k`` (1-based) is the point right after the k-th user message, where
the model's reply to it goes. ``--turns last`` scores the last user turn, ``--turns all`` every one.

*Context.* Every method at turn ``k`` sees the same context: the system prompt, the user turns up
to ``k`` and, between them, the replies to turns ``1..k-1``. With ``--replies regenerate`` those
are the model's own replies, generated turn by turn without any bail instruction (a reply chain
per conversation, one call per turn; each reply enters the context with its thinking removed);
with ``--replies keep`` they are the conversation's existing replies (no calls).

*Per scored turn and method:*

* ``prompt``: the model's reply to turn ``k`` (``regenerate``: the chain's reply, generated once
  and shared by both orders; ``keep``: the existing reply, generated only when the conversation
  has none), then the bail prompt as a user turn, in both orders, with the assistant prefilled with
  ``<wellbeing>``: 1 call per order asking for ``top_logprobs``. Where the server returns no
  logprobs, P(bail) comes from ``--samples`` sampled replies instead: 1 call with ``n`` samples per
  order (plus single-sample calls with fixed seeds if the server returns fewer choices). In
  ``--scoring auto`` one probe request decides which of the two a run uses, so a server without
  logprobs costs no wasted call per turn. ``--scoring sequence`` scores each order with 2 calls
  instead, the assistant prefilled with ``<wellbeing>🔄`` and ``<wellbeing>🟢``, asking for
  ``prompt_logprobs`` (vLLM) and ``max_tokens=1``: exact whatever the tokenization (see
  :mod:`bailclio.detect.scoring`). In ``--scoring auto``, an order whose first-position alternatives
  include a token the server could not show (``""``, ``"\ufffd"``: byte pieces of the symbols
  that cannot be told apart) is rescored that way, +2 calls per such order, where the server
  returns prompt logprobs (the first such order probes it; otherwise the logprobs result is
  kept). The ``scoring`` column says which method gave each P(bail): ``logprobs``,
  ``sequence`` or ``samples k/n``. With ``--journal``, 1 more call per bailed order.
* ``string``: 1 call: the context plus the user turn, with the bail string appended to the system
  prompt; the reply is scored.
* ``tool``: 1 call: the context plus the user turn, with the bail tool offered.

So ``regenerate`` with all three methods costs 1 + 2 + 1 + 1 = 5 calls per scored turn (+ journals),
and ``--turns last`` additionally costs the chain's replies to the earlier turns. Every call goes
through the back-end's cache (``DIR/llm_cache.sqlite``), so a killed run resumes without repeating
completed calls.

Decisions and outputs
---------------------
* ``detections.parquet``: one row per scored turn and method; the prompt method has a row per
  order (``bail_first``, ``continue_first``) and a turn-level row ``order="both"`` whose P(bail)
  is the mean of the two orders (bailed when above ``--threshold``; the order rows keep their own
  decisions, to measure positional bias). String and tool rows have P(bail) 0 or 1. ``reply`` is
  the reply after which the bail was measured (raw, thinking included); ``response`` is what the
  scoring call returned (the text after ``<wellbeing>``, the samples, or the tool calls). A failed
  call is a row with ``error`` set (``"budget"`` when the budget ran out), left out of the rates
  and counted in the summary; a failed reply fails only the rows that depend on it.
* ``bails.parquet``: one row per bailed (conversation, turn), in the shape ``bailclio run`` reads:
  ``conversation`` is the transcript cut after the reply the model bailed after (thinking
  removed), ``bail_turn`` the index of that reply. When several methods bail on one turn,
  ``bail_method`` is the first of prompt, tool, string (the prompt method is the study's main
  measurement and has a journal; the tool call is the more deliberate act of the other two) and
  ``bail_methods`` lists them all; the transcript ends with that method's reply. ``conversation_id``
  is the input id with ``--turns last`` and ``<id>#turn<k>`` with ``--turns all`` (ids stay
  unique); ``source_conversation_id`` and ``user_turn`` say where it came from. The input's
  other columns are preserved (its id column is not, so the loader uses ``conversation_id``).
* Thinking (``<think>…</think>``, a leading part closed by ``</think>``, an unclosed ``<think>``)
  is ignored by every decision; see :mod:`bailclio.detect.scoring` for the rules, including how a
  symbol split over several tokens is scored.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import atomic, rundir
from bailclio.config import Config
from bailclio.detect import refusal
from bailclio.detect.conversations import Conversation, conversations_from_frame, read_prefix
from bailclio.detect.detector import Detector
from bailclio.detect.false_bails import flag_false_bails
from bailclio.detect.options import METHOD_PRIORITY, METHODS, DetectOptions
from bailclio.detect.outputs import bails_frame, detections_frame, method_rates, rates_table
from bailclio.errors import UserError
from bailclio.ingest import read_input
from bailclio.llm import make_backend, preflight
from bailclio.llm.base import LLMBackend
from bailclio.provenance import file_sha256, package_versions

__all__ = [
    "METHODS",
    "METHOD_PRIORITY",
    "Conversation",
    "DetectOptions",
    "Detector",
    "conversations_from_frame",
    "flag_false_bails",
    "rates_table",
    "run_detect",
]

_log = logging.getLogger(__name__)

# Packages whose versions the detect manifest records.
DETECT_PACKAGES = ("polars", "openai", "httpx", "pyarrow")


@dataclass
class Loaded:
    """The conversations to score, read from the input file."""

    src: Path
    rows_read: int
    convs: list[Conversation]
    rejects: list[dict[str, Any]]
    load_s: float


@dataclass
class Measured:
    """What the back-end calls produced."""

    det: Detector
    det_frame: pl.DataFrame
    bail_frame: pl.DataFrame
    false_bails: dict[str, Any] | None
    refusal: dict[str, Any]
    stats: dict[str, Any]
    judge_stats: dict[str, Any] | None
    budget: bool


def load_conversations(
    src: Path, out: Path, config: Config, prefix: list[dict[str, str]] | None = None
) -> Loaded:
    """Read the input; rows without a user turn are rejects. Nothing to score is an input error
    (rejects.jsonl is written unless a previous detect's outputs are in ``out``). ``prefix``
    messages go before every conversation (after its system prompt)."""
    prefix = prefix or []
    t0 = time.perf_counter()
    ing = read_input(
        src,
        text_column=config.input.text_column,
        id_column=config.input.id_column,
        limit=config.input.limit,
        max_chars=config.input.max_chars,
    )
    out.mkdir(parents=True, exist_ok=True)
    convs = conversations_from_frame(ing.frame, config.input.id_column)
    rejects = list(ing.rejects)
    for c in convs:
        if not c.turns:
            line = c.columns.get("input_line")
            rejects.append({"line": line, "field": "conversation", "reason": "no user turn to score"})
    convs = [c for c in convs if c.turns]
    for c in convs:
        c.fixed = list(prefix)
    ing.rejects = rejects
    if not convs:
        if not (out / rundir.DETECT_SUMMARY).exists():  # a previous detect's outputs stay whole
            ing.write_rejects(out / rundir.REJECTS)
        raise UserError(f"{src}: no conversation has a user turn to score")
    return Loaded(src, ing.rows_read, convs, rejects, time.perf_counter() - t0)


def measure(
    loaded: Loaded,
    out: Path,
    llm: Any,
    options: DetectOptions,
    *,
    judge_model: str | None,
    progress: bool,
    say: Any,
    backend: LLMBackend | None,
) -> Measured:
    """Run the detector (and the false-bail judge) on the back-end; close what was opened here."""
    owns_backend = backend is None
    if backend is None:
        preflight(llm)  # an unreachable server: one line before any call
        backend = make_backend(llm, out / rundir.LLM_CACHE, progress=progress)
    if backend is None:
        raise UserError("detect needs a model: use --llm openai --base-url URL, or --llm vllm")
    judge = None
    convs = loaded.convs
    try:
        classifier = None
        if options.refusal == "classifier":  # a model that cannot load fails before any call
            classifier = refusal.RefusalClassifier(
                str(options.refusal_model), batch_size=options.refusal_batch_size
            )
        uses_judge = options.refusal == "judge" or options.flag_false_bails
        if uses_judge and judge_model and judge_model != options.model:
            judge = make_backend(
                llm.model_copy(update={"model": judge_model}),
                out / rundir.LLM_CACHE,
                progress=progress,
            )
        det = Detector(backend, options, log=say)
        say(
            f"detect: {len(convs)} conversations, methods {','.join(options.methods)}, "
            f"turns {options.turns}, replies {options.replies}, refusal {options.refusal}"
        )
        rows, bails = det.run(convs)
        users = {(c.cid, k + 1): c.turns[k].user["content"] for c in convs for k in range(len(c.turns))}
        refusal_info = refusal.annotate(
            rows,
            bails,
            users,
            options.refusal,
            options.refusal_threshold,
            classifier=classifier,
            judge=judge or backend,
            progress=progress,
        )
        refusal_info["judge_model"] = (judge_model or options.model) if options.refusal == "judge" else None
        det.timings["refusal_s"] = refusal_info["seconds"]
        if refusal_info["requests"]:
            det.requests["refusal_judge"] = refusal_info["requests"]
        false_bails = None
        if options.flag_false_bails and bails:
            t1 = time.perf_counter()
            false_bails = flag_false_bails(judge or backend, bails)
            false_bails["model"] = judge_model or options.model
            det.requests["judge"] = false_bails["requests"]
            det.timings["judge_s"] = time.perf_counter() - t1
        return Measured(
            det=det,
            det_frame=detections_frame(rows),
            bail_frame=bails_frame(bails),
            false_bails=false_bails,
            refusal=refusal_info,
            stats=backend.stats(),
            judge_stats=judge.stats() if judge is not None else None,
            budget=backend.budget_exhausted,
        )
    finally:
        if owns_backend:
            backend.close()
        if judge is not None:
            judge.close()


def build_summary(
    loaded: Loaded, m: Measured, config: Config, options: DetectOptions, cache: str
) -> dict[str, Any]:
    """summary.json: rates, counts, calls, options, provenance and timings (total_s added later)."""
    det, det_frame = m.det, m.det_frame
    convs = loaded.convs
    n_cells = sum(len(c.scored(options.turns)) for c in convs)
    n_requests = sum(det.requests.values())
    return {
        "command": "detect",
        "model": options.model,
        "model_label": options.model_label,
        "rates": method_rates(det_frame),
        "scoring": det.scoring_mode,
        "counts": {
            "rows_read": loaded.rows_read,
            "conversations": len(convs),
            "rejected": len(loaded.rejects),
            "scored_turns": n_cells,
            "detections": det_frame.height,
            "detection_errors": int(det_frame["error"].is_not_null().sum()),
            "bails": m.bail_frame.height,
            "journal_failures": det.journal_failures,
            "non_chat_messages_dropped": sum(c.dropped_messages for c in convs),
        },
        "calls": {
            "requests_by_purpose": dict(det.requests),
            "requests": n_requests,
            "requests_per_scored_turn": round(n_requests / n_cells, 4) if n_cells else None,
            "backend": m.stats,
            "judge_backend": m.judge_stats,
        },
        "tokens": {
            "prompt": int(m.stats.get("prompt_tokens", 0)),
            "completion": int(m.stats.get("completion_tokens", 0)),
        },
        "budget_exhausted": m.budget,
        "false_bails": m.false_bails,
        "refusal": m.refusal,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.__dict__.items()},
        "method_priority": list(METHOD_PRIORITY),
        "config": config.model_dump(mode="json"),
        "input": {"path": str(loaded.src), "sha256": file_sha256(loaded.src)},
        "versions": package_versions(DETECT_PACKAGES),
        "timings": {
            "load_s": round(loaded.load_s, 3),
            **{k: round(v, 3) for k, v in det.timings.items()},
        },
        "outputs": {
            "detections": rundir.DETECTIONS,
            "bails": rundir.BAILS,
            "rejects": rundir.REJECTS,
            "cache": cache,
        },
    }


def write_outputs(out: Path, m: Measured, rejects: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Every output replaces its predecessor in one step, summary.json last: a detect killed at any
    moment leaves the previous outputs as they were (only the LLM cache has grown)."""
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=str)
    rejects_text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rejects)
    atomic.write_files(
        {
            out / rundir.DETECTIONS: m.det_frame.write_parquet,
            out / rundir.BAILS: m.bail_frame.write_parquet,
            out / rundir.REJECTS: lambda p: p.write_bytes(rejects_text.encode("utf-8", "backslashreplace")),
            out / rundir.DETECT_SUMMARY: lambda p: p.write_text(text, encoding="utf-8"),
        }
    )


def run_detect(
    input_path: str | Path,
    out_dir: str | Path,
    config: Config,
    options: DetectOptions,
    *,
    judge_model: str | None = None,
    progress: bool = True,
    log: Any = None,
    backend: LLMBackend | None = None,
) -> dict[str, Any]:
    """Load ``input_path``, detect bails with the configured back-end (or ``backend``, an
    instance the caller keeps and closes), write the outputs in ``out_dir`` (detections.parquet,
    bails.parquet, summary.json, rejects.jsonl) and return the summary. The LLM cache is
    ``out_dir/llm_cache.sqlite`` unless ``llm.cache_path`` is set."""
    say = log or _log.info
    started = time.time()
    t0 = time.perf_counter()
    out = Path(out_dir)
    prefix = read_prefix(options.prefix) if options.prefix else []
    loaded = load_conversations(Path(input_path), out, config, prefix)
    llm = config.llm.model_copy(update={"model": options.model})
    m = measure(
        loaded,
        out,
        llm,
        options,
        judge_model=judge_model,
        progress=progress,
        say=say,
        backend=backend,
    )
    cache = str(llm.cache_path or (out / rundir.LLM_CACHE))
    summary = build_summary(loaded, m, config, options, cache)
    summary["prefix"] = (
        {"path": str(options.prefix), "sha256": file_sha256(Path(options.prefix)), "messages": len(prefix)}
        if options.prefix
        else None
    )
    summary["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    summary["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    summary["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_outputs(out, m, loaded.rejects, summary)
    return summary
