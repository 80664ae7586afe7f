"""Requests per second of the openai back-end against the scripted server (50 ms per answer).

Compares, in one command, a plain sequential loop with the synchronous ``openai`` client (one
request after another, the baseline) with ``OpenAIBackend.generate`` at concurrency 1, 8 and 64.
The server runs in its own process so client and server do not share one interpreter. Every
measurement is repeated (``--repeats``, default 3) and the median is reported; no cache is used.

    python bench/llm_throughput.py [--latency-ms 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bailclio.llm.base import ChatRequest
from bailclio.llm.openai_backend import OpenAIBackend


def _messages(tag: str, i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{tag} request {i}"}]


def sequential(base_url: str, n: int, tag: str) -> float:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    t0 = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="scripted-model", messages=_messages(tag, i))
    dt = time.perf_counter() - t0
    client.close()
    return n / dt


def with_backend(base_url: str, n: int, tag: str, concurrency: int) -> float:
    be = OpenAIBackend("scripted-model", base_url=base_url, max_concurrency=concurrency, progress=False)
    reqs = [ChatRequest(messages=_messages(tag, i)) for i in range(n)]
    t0 = time.perf_counter()
    res = be.generate(reqs)
    dt = time.perf_counter() - t0
    bad = [r.error for r in res if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return n / dt


def median_of(repeats: int, fn: Callable[[str], float]) -> tuple[float, list[float]]:
    runs = [fn(f"r{r}-{time.perf_counter_ns()}") for r in range(repeats)]
    return statistics.median(runs), runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "support.scripted_server", "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        # the scripted server is test support (tests/support)
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests")},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        base_url = f"http://127.0.0.1:{port}/v1"
        sequential(base_url, 3, "warmup")
        rows: list[tuple[str, int, int, float, list[float]]] = []
        n_seq = 40
        med, runs = median_of(args.repeats, lambda tag: sequential(base_url, n_seq, tag))
        rows.append(("sequential openai.OpenAI loop", 1, n_seq, med, runs))
        for conc, n in ((1, 40), (8, 240), (64, 1280)):
            med, runs = median_of(args.repeats, lambda tag, c=conc, k=n: with_backend(base_url, k, tag, c))
            rows.append(("OpenAIBackend.generate", conc, n, med, runs))
    finally:
        server.kill()
        server.wait()

    base = rows[0][3]
    print(f"scripted server latency {args.latency_ms:g} ms, median of {args.repeats} repeats")
    head = f"{'client':<32}{'concurrency':>12}{'requests':>10}{'req/s':>10}{'vs seq':>9}  runs"
    print(head)
    print("-" * len(head))
    for name, conc, n, med, runs in rows:
        runs_txt = " ".join(f"{r:.1f}" for r in runs)
        print(f"{name:<32}{conc:>12}{n:>10}{med:>10.1f}{med / base:>8.1f}x  {runs_txt}")
    ratio64 = rows[-1][3] / base
    print(f"concurrency 64 vs sequential: {ratio64:.1f}x (target >= 20x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
