"""Throughput of ``bailclio detect`` against the scripted protocol-following model (50 ms a call).

Part 1: requests/s and bails/hour of a whole detect run (all three methods, last turn, replies
regenerated, two user turns per conversation) at concurrency 1, 8 and 64; the ratio column is
against concurrency 1 measured in the same command. Each run starts from an empty output
directory (no cache). Part 2: measured calls per scored conversation-turn for each method alone,
for ``--turns last`` / ``all`` and ``--replies regenerate`` / ``keep``, and for the prompt method
on a server without logprobs (sampling). Medians over ``--repeats`` (default 3).

The server runs in its own process (tests/support/detect_model.py answers) so client and server do not
share one interpreter.

    python bench/detect_throughput.py [--latency-ms 50] [--repeats 3]

With ``--refusal LIST`` (e.g. ``lexical`` or ``lexical,judge``) it measures only the cost of the
refusal axis instead: whole detect runs (all methods, 80 conversations, concurrency 8) with each
reply classifier and with ``--refusal none``, the runs of one repeat back to back, and prints the
median wall time of each, its ratio to ``none``, and the median time spent scoring replies
(``timings.refusal_s``) and its share of the run (``--refusal-model`` for ``classifier``).

    python bench/detect_throughput.py --refusal lexical --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bailclio.config import Config
from bailclio.detect.runner import DetectOptions, run_detect

ROOT = Path(__file__).resolve().parent.parent

_SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from support.detect_model import simulated_model
from support.scripted_server import ScriptedServer
srv = ScriptedServer(simulated_model, latency_ms={latency}, supports_logprobs={logprobs}).start()
print("PORT", srv.port, flush=True)
while True:
    time.sleep(3600)
"""


def start_server(latency_ms: float, logprobs: bool = True) -> tuple[subprocess.Popen, str]:
    code = _SERVER.format(tests=str(ROOT / "tests"), latency=latency_ms, logprobs=logprobs)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    return proc, f"http://127.0.0.1:{port}/v1"


def write_input(path: Path, n: int, tag: str) -> Path:
    """n conversations of two user turns; every 5th bails by prompt, every 7th by string and
    every 9th by tool; every 4th is refused."""
    rows = []
    for i in range(n):
        marker = []
        if i % 5 == 0:
            marker.append("BAILME")
        if i % 7 == 0:
            marker.append("STRINGME")
        if i % 9 == 0:
            marker.append("TOOLME")
        if i % 4 == 0:
            marker.append("REFUSEME")
        last = f"{tag} question {i} {' '.join(marker)}".strip()
        conv = [
            {"role": "user", "content": f"{tag} hello {i}"},
            {"role": "assistant", "content": f"original reply {i}"},
            {"role": "user", "content": last},
        ]
        rows.append({"id": f"c{i}", "conversation": conv})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def one_run(base_url: str, n: int, concurrency: int, tmp: Path, tag: str, **opts: Any) -> dict[str, Any]:
    src = write_input(tmp / f"{tag}.jsonl", n, tag)
    config = Config.model_validate(
        {"llm": {"backend": "openai", "base_url": base_url, "max_concurrency": concurrency}}
    )
    options = DetectOptions(model="Qwen/scripted", **opts)
    t0 = time.perf_counter()
    summary = run_detect(src, tmp / f"out-{tag}", config, options, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    calls = summary["calls"]["backend"]["calls"]
    if summary["counts"]["detection_errors"]:
        raise SystemExit(f"{summary['counts']['detection_errors']} detection rows failed")
    return {
        "wall": wall,
        "calls": calls,
        "req_s": calls / wall,
        "bails_h": summary["counts"]["bails"] / wall * 3600,
        "per_turn": calls / summary["counts"]["scored_turns"],
        "refusal_scored": (summary.get("refusal") or {}).get("replies_scored", 0),
        "refusal_s": summary["timings"].get("refusal_s", 0.0),
    }


def refusal_cost(base_url: str, classifiers: list[str], repeats: int, model: str | None) -> None:
    """Median wall time of detect with each reply classifier against ``--refusal none``."""
    kinds = ["none", *[c for c in classifiers if c != "none"]]
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    own: dict[str, list[float]] = {k: [] for k in kinds}
    replies: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one_run(base_url, 2, 8, tmp, "warmup", refusal="lexical")
        for r in range(repeats):
            for k in kinds if r % 2 == 0 else kinds[::-1]:  # alternate the order against drift
                extra = {"refusal_model": model} if k == "classifier" else {}
                res = one_run(base_url, 80, 8, tmp, f"{k}{r}", refusal=k, **extra)
                walls[k].append(res["wall"])
                own[k].append(res["refusal_s"])
                replies[k] = res["refusal_scored"]
    base = statistics.median(walls["none"])
    print(
        "refusal axis cost: detect of 80 conversations (prompt,string,tool), concurrency 8, "
        f"median of {repeats}"
    )
    head = f"{'--refusal':<12} {'replies':>8} {'wall s':>8} {'vs none':>8} {'refusal s':>10} {'share':>7}"
    head += "  runs (s)"
    print(head)
    print("-" * len(head))
    for k in kinds:
        med = statistics.median(walls[k])
        runs = ", ".join(f"{w:.2f}" for w in walls[k])
        mine = statistics.median(own[k])
        share = statistics.median(o / w for o, w in zip(own[k], walls[k], strict=True))
        print(
            f"{k:<12} {replies[k]:>8} {med:>8.2f} {med / base:>7.3f}x {mine:>10.3f} {100 * share:>6.2f}%"
            f"  {runs}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--refusal", help="comma list of reply classifiers to compare with none")
    ap.add_argument("--refusal-model", help="model for --refusal classifier")
    args = ap.parse_args()
    if args.refusal:
        server, base_url = start_server(args.latency_ms)
        try:
            refusal_cost(base_url, args.refusal.split(","), args.repeats, args.refusal_model)
        finally:
            server.terminate()
            server.wait(timeout=10)
        return 0
    server, base_url = start_server(args.latency_ms)
    nolp_server, nolp_url = start_server(args.latency_ms, logprobs=False)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            one_run(base_url, 2, 1, tmp, "warmup")
            print(
                f"detect throughput, scripted server {args.latency_ms:g} ms per call, "
                f"median of {args.repeats}; methods prompt,string,tool, turns last, regenerate"
            )
            head = (
                f"{'concurrency':>11} {'convs':>6} {'calls':>6} {'wall s':>7} {'req/s':>8} "
                f"{'bails/h':>9} {'vs c=1':>7}  runs req/s"
            )
            print(head)
            print("-" * len(head))
            base = None
            for conc, n in ((1, 20), (8, 80), (64, 320)):
                runs = [one_run(base_url, n, conc, tmp, f"c{conc}r{r}") for r in range(args.repeats)]
                req_s = statistics.median(r["req_s"] for r in runs)
                bails_h = statistics.median(r["bails_h"] for r in runs)
                wall = statistics.median(r["wall"] for r in runs)
                base = base or req_s
                print(
                    f"{conc:>11} {n:>6} {runs[0]['calls']:>6} {wall:>7.2f} {req_s:>8.1f} "
                    f"{bails_h:>9.0f} {req_s / base:>6.1f}x  " + ", ".join(f"{r['req_s']:.1f}" for r in runs)
                )

            print("\nmeasured calls per scored conversation-turn (2 user turns per conversation)")
            head = f"{'method':<22} {'turns':<6} {'replies':<11} {'calls/turn':>10}"
            print(head)
            print("-" * len(head))
            cases = []
            for method in ("prompt", "string", "tool", "prompt,string,tool"):
                for turns in ("last", "all"):
                    for replies in ("regenerate", "keep"):
                        cases.append((method, turns, replies, base_url, ""))
            cases.append(("prompt", "last", "regenerate", nolp_url, " (no logprobs, 10 samples)"))
            cases.append(("prompt", "all", "keep", nolp_url, " (no logprobs, 10 samples)"))
            for i, (method, turns, replies, url, note) in enumerate(cases):
                runs = [
                    one_run(
                        url,
                        40,
                        64,
                        tmp,
                        f"m{i}r{r}",
                        methods=tuple(method.split(",")),
                        turns=turns,
                        replies=replies,
                    )
                    for r in range(args.repeats)
                ]
                per = statistics.median(r["per_turn"] for r in runs)
                print(f"{method:<22} {turns:<6} {replies:<11} {per:>10.3f}{note}")
    finally:
        for proc in (server, nolp_server):
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
