"""A battery of hostile-but-fair invocations of the ``bailclio`` command, as a careful user or an
attacker would try them: odd input files, outputs that must not be replaced, damaged run
directories, two writers at once.

Each case runs the real command in a fresh process with a time limit and is judged on:

* **no traceback**: stderr never holds "Traceback";
* **exit status**: 0, or a documented failure (2, 3, 4) with exactly one line on stderr;
* **no hang**: it ends within the time limit;
* **no data lost**: every file the case marks as the user's is byte for byte as it was, and every
  input row is either in the run or in its rejects file.

Usage: python bench/hostile.py [--only SUBSTRING] [--timeout 600] [--keep DIR]
Prints one line per case and a summary; exits 1 when any case fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAILCLIO = [sys.executable, "-m", "bailclio.cli"]
DOCUMENTED = {0, 2, 3, 4}


@dataclass
class Case:
    name: str
    argv: list[str]
    protect: list[Path] = field(default_factory=list)  # files and folders that must not change
    rows: int | None = None  # input rows: accepted + rejected must equal this (run cases)
    out: Path | None = None
    expect: set[int] = field(default_factory=lambda: set(DOCUMENTED))


def snapshot(paths: list[Path]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for p in paths:
        items = [p] if not p.is_dir() else sorted(x for x in p.rglob("*") if x.is_file())
        for x in items:
            if x.is_symlink():
                out[str(x)] = os.readlink(x).encode()
            else:  # a FIFO or device is never read: only that it is still there
                out[str(x)] = x.read_bytes() if x.is_file() else b"<special file>"
    return out


def run_case(case: Case, timeout: float) -> tuple[bool, str]:
    before = snapshot(case.protect)
    start = time.monotonic()
    try:
        done = subprocess.run([*BAILCLIO, *case.argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"HANG (> {timeout:.0f}s)"
    took = time.monotonic() - start
    err = done.stderr.strip()
    problems = []
    if "Traceback" in err:
        problems.append("traceback: " + err.splitlines()[-1][:160])
    if done.returncode not in case.expect:
        problems.append(f"exit {done.returncode} (expected {sorted(case.expect)})")
    lines = [x for x in err.splitlines() if x.startswith("bailclio")]
    if done.returncode != 0 and len(lines) != 1:
        problems.append(f"{len(lines)} error lines")
    if snapshot(case.protect) != before:
        problems.append("DATA LOST: a protected file changed")
    if case.rows is not None and done.returncode in (0, 4) and case.out is not None:
        problems += row_accounting(case.out, case.rows)
    shown = (lines[0] if lines else (done.stdout.strip().splitlines() or [""])[-1])[:150]
    return not problems, f"exit {done.returncode} {took:5.1f}s " + ("; ".join(problems) or shown)


def row_accounting(out: Path, rows: int) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    rejects = out / "rejects.jsonl"
    n_rej = len(rejects.read_text().splitlines()) if rejects.exists() else 0
    if counts["accepted"] + n_rej != rows or counts["rejected"] != n_rej:
        return [f"rows lost: {rows} in, {counts['accepted']} accepted + {n_rej} rejected"]
    return []


# --------------------------------------------------------------------------- the cases


def text_rows(n: int, start: int = 0) -> list[dict]:
    topics = ["bomb making", "phishing emails", "stalking someone", "self harm", "malware", "fake news"]
    return [
        {"id": i, "text": f"please help me with {topics[i % 6]}, request {i}"}
        for i in range(start, start + n)
    ]


def jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def input_cases(d: Path) -> list[Case]:
    """Odd input files: each run keeps every good row and rejects the bad ones with a reason."""
    cases = []

    def run(name: str, src: Path, rows: int | None, *extra: str, expect: set[int] | None = None) -> None:
        out = d / f"out-{name}"
        c = Case(name, ["run", str(src), "--out", str(out), "--quiet", *extra], [src], rows, out)
        if expect is not None:
            c.expect = expect
        cases.append(c)

    good = text_rows(40)
    run("huge-line", jsonl(d / "huge.jsonl", [*good, {"id": "big", "text": "x" * (9 << 20)}]), 41)
    run(
        "deep-brackets",
        jsonl(
            d / "deep.jsonl", [*good, '{"id": 99, "text": "t", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"]
        ),
        41,
    )
    nested: dict = {}
    node = nested
    for _ in range(500):
        node["k"] = {}
        node = node["k"]
    run("deep-metadata", jsonl(d / "meta.jsonl", [*good, {"id": 98, "text": "t", "meta": nested}]), 41)
    run(
        "nan-ids", jsonl(d / "nan.jsonl", [*good, '{"id": NaN, "text": "a"}', '{"id": NaN, "text": "b"}']), 42
    )
    zw = ["\u200b\u200b", "\u200c", "\u2060\u2060", "\ufeff", "\u00ad", "\u3164", "\u2800"]
    run(
        "zero-width",
        jsonl(d / "zw.jsonl", [*good, *({"id": 100 + i, "text": z} for i, z in enumerate(zw))]),
        47,
    )
    lines = ["id,content"] + [f"{r['id']},{r['text'].replace(',', ';')}" for r in good]
    lines[10] = '9,"a stray quote that never closes'
    (d / "quote.csv").write_text("\n".join(lines) + "\n")
    run("stray-quote", d / "quote.csv", 40)
    cols = ",".join(f"c{i}" for i in range(10_000))
    wide = ["id,content," + cols] + [
        f"{r['id']},{r['text'].replace(',', ';')}," + ",".join("1" for _ in range(10_000)) for r in good
    ]
    (d / "wide.csv").write_text("\n".join(wide) + "\n")
    run("10000-columns", d / "wide.csv", 40)
    (d / "cr.jsonl").write_text("".join(json.dumps(r) + "\r" for r in good))
    run("cr-only-line-ends", d / "cr.jsonl", 40)
    (d / "zero.jsonl").symlink_to("/dev/zero")
    run("dev-zero", d / "zero.jsonl", None, expect={2})
    os.mkfifo(d / "fifo.jsonl")
    run("fifo-input", d / "fifo.jsonl", None, expect={2})
    (d / "garbage.parquet").write_bytes(os.urandom(4096))
    run("corrupt-parquet", d / "garbage.parquet", None, expect={2})
    (d / "empty.csv").write_text("")
    run("empty-file", d / "empty.csv", None, expect={2})
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    run("deep-json-document", d / "deep.json", None, expect={2})
    dup = jsonl(d / "dup.jsonl", [*good, {"id": 0, "text": "again"}])
    run("duplicate-id", dup, None, expect={2})
    src = jsonl(d / "ok.jsonl", good)
    for seed in ("-1", str(2**32)):
        run(f"seed-{seed}", src, None, "--seed", seed, expect={2})
    run("limit-0", src, None, "--limit", "0", expect={2})
    return cases


def output_cases(d: Path, base_run: Path, src: Path) -> list[Case]:
    """Outputs that must not be replaced, deleted or damaged."""
    cases = []
    user = d / "user-folder"
    user.mkdir()
    (user / "rejects.jsonl").write_text("{}\n")
    (user / "thesis.txt").write_text("four years")
    cases.append(
        Case("force-user-folder", ["run", str(src), "--out", str(user), "--force"], [user], expect={2})
    )
    det = d / "detect-folder"
    det.mkdir()
    for name in ("bails.parquet", "detections.parquet", "llm_cache.sqlite"):
        (det / name).write_bytes(b"paid for")
    (det / "summary.json").write_text(json.dumps({"command": "detect"}))
    cases.append(
        Case("force-detect-folder", ["run", str(src), "--out", str(det), "--force"], [det], expect={2})
    )
    run = copy_run(base_run, d / "run-a")
    for name in ("taxonomy.json", "manifest.json", "conversations.parquet"):
        argv = ["export", str(run), "--format", "csv", "--out", str(run / name)]
        cases.append(Case(f"export-over-{name}", argv, [run], expect={2}))
    argv = ["assign", str(run), str(src), "--out", str(run / "assignments.parquet")]
    cases.append(Case("assign-over-assignments", argv, [run], expect={2}))
    cases.append(
        Case(
            "export-over-input-run",
            ["export", str(run), "--format", "csv", "--out", str(run)],
            [run],
            expect={2},
        )
    )
    link = d / "stdout.csv"
    link.symlink_to("/dev/stdout")
    cases.append(
        Case(
            "export-to-dev-stdout",
            ["export", str(run), "--format", "csv", "--out", str(link)],
            [link],
            expect={2},
        )
    )
    os.mkfifo(d / "out-fifo.csv")
    argv = ["export", str(run), "--format", "csv", "--out", str(d / "out-fifo.csv")]
    cases.append(Case("export-to-fifo", argv, [], expect={2}))
    target = d / "target.csv"
    target.write_text("x")
    (d / "link.csv").symlink_to(target)
    argv = ["export", str(run), "--format", "csv", "--out", str(d / "link.csv")]
    cases.append(Case("export-through-symlink", argv, [d / "link.csv"], expect={0}))
    blocker = d / "a-file"
    blocker.write_text("x")
    argv = ["export", str(run), "--format", "csv", "--out", str(blocker / "x.csv")]
    cases.append(Case("export-below-a-file", argv, [blocker], expect={2}))
    return cases


def copy_run(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


def damaged_run_cases(d: Path, base_run: Path) -> list[Case]:
    """Run directories whose files disagree or are damaged: one line, exit 2, nothing loops."""
    damages: dict[str, Callable[[Path], None]] = {
        "parent-cycle": lambda r: edit_tax(r, lambda n: n[0].update(parent_id=child_of(n, n[0])["id"])),
        "self-parent": lambda r: edit_tax(r, lambda n: n[0].update(parent_id=n[0]["id"])),
        "dangling-parent": lambda r: edit_tax(r, lambda n: n[-1].update(parent_id="nowhere")),
        "duplicate-node": lambda r: edit_tax(r, lambda n: n.append(dict(n[0]))),
        "node-not-object": lambda r: edit_tax(r, lambda n: n.append(7)),
        "level-as-text": lambda r: edit_tax(r, lambda n: n[0].update(level="top")),
        "manifest-garbage": lambda r: (r / "manifest.json").write_text("{not json"),
        "manifest-list": lambda r: (r / "manifest.json").write_text("[]"),
        "taxonomy-garbage": lambda r: (r / "taxonomy.json").write_text("[1, 2]"),
        "short-assignments": lambda r: shorten(r, "assignments.parquet"),
        "short-conversations": lambda r: shorten(r, "conversations.parquet"),
        "embeddings-garbage": lambda r: (r / "embeddings.npy").write_bytes(b"\x93NUMPY garbage"),
        "curation-garbage": lambda r: (r / "curation.json").write_text("{"),
    }
    cases = []
    for name, damage in damages.items():
        run = copy_run(base_run, d / f"damaged-{name}")
        damage(run)
        for argv in (
            ["show", str(run)],
            ["export", str(run), "--format", "csv", "--out", str(d / f"{name}.csv")],
        ):
            cases.append(Case(f"{name}/{argv[0]}", argv, [run], expect={2}))
    return cases


def edit_tax(run: Path, change: Callable[[list], object]) -> None:
    data = json.loads((run / "taxonomy.json").read_text())
    change(data["nodes"])
    (run / "taxonomy.json").write_text(json.dumps(data))


def child_of(nodes: list, parent: dict) -> dict:
    return next(x for x in nodes if x.get("parent_id") == parent["id"])


def shorten(run: Path, name: str) -> None:
    import polars as pl  # only the damage needs it

    pl.read_parquet(run / name).head(2).write_parquet(run / name)


def concurrent_writers(d: Path, src: Path, timeout: float) -> tuple[bool, str]:
    """Two runs into one new --out started together: one writes, the other is refused."""
    out = d / "together"
    argv = [*BAILCLIO, "run", str(src), "--out", str(out), "--quiet"]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        codes = sorted(p.wait(timeout=timeout) for p in procs)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        return False, "HANG"
    errs = [p.stderr.read() if p.stderr else "" for p in procs]
    ok = codes == [0, 2] and not any("Traceback" in e for e in errs)
    return ok, f"exit codes {codes}; " + " | ".join(e.strip()[:100] for e in errs if e.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="hostile-")) if args.keep is None else args.keep
    d.mkdir(parents=True, exist_ok=True)
    src = jsonl(d / "base.jsonl", text_rows(60))
    base_run = d / "base-run"
    if not base_run.exists():
        subprocess.run([*BAILCLIO, "run", str(src), "--out", str(base_run), "--quiet"], check=True)
    work = Path(tempfile.mkdtemp(prefix="cases-", dir=d))  # the cases' own files, fresh each time
    cases = [*output_cases(work, base_run, src), *damaged_run_cases(work, base_run), *input_cases(work)]
    failed = 0
    total = 0
    for case in cases:
        if args.only not in case.name:
            continue
        ok, what = run_case(case, args.timeout)
        total += 1
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case.name:32s} {what}", flush=True)
    if args.only in "concurrent-writers":
        ok, what = concurrent_writers(work, src, args.timeout)
        total += 1
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {'concurrent-writers':32s} {what}", flush=True)
    print(f"\n{total - failed} of {total} cases held; {failed} failed (work folder {d})")
    if args.keep is None:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
