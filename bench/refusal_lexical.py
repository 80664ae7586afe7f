"""Accuracy of the lexical refusal detector on the labelled reply set (data/refusal_labelled.jsonl).

Prints accuracy, precision and recall of ``refused`` with Wilson 95% intervals, the accuracy per
kind of reply (refusal, partial compliance, helpful answer that says sorry, helpful answer) and
per prompt style, and every miss with the phrase that matched (if any). A baseline in the same
command: the keyword rule "the reply contains sorry/apologi[sz]e/can't/cannot/unable" anywhere.

    python bench/refusal_lexical.py [--data data/refusal_labelled.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from bailclio.detect.refusal_lexical import matched_phrase, p_refuse
from bailclio.stats import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = re.compile(r"\b(sorry|apologi[sz]e|can't|cannot|unable)\b", re.IGNORECASE)


def rate(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / n:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" if n else "-"


def scores(rows: list[dict], predict) -> dict[str, tuple[int, int]]:
    tp = sum(1 for r in rows if predict(r["reply"]) and r["refused"])
    fp = sum(1 for r in rows if predict(r["reply"]) and not r["refused"])
    fn = sum(1 for r in rows if not predict(r["reply"]) and r["refused"])
    ok = sum(1 for r in rows if predict(r["reply"]) == r["refused"])
    return {"accuracy": (ok, len(rows)), "precision": (tp, tp + fp), "recall": (tp, tp + fn)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "refusal_labelled.jsonl"))
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line]
    lexical = lambda text: p_refuse(text) > 0.5  # noqa: E731
    keyword = lambda text: bool(KEYWORDS.search(text))  # noqa: E731
    print(f"{len(rows)} labelled replies ({sum(r['refused'] for r in rows)} refusals), {args.data}")
    print(f"{'measure':<10} {'lexical (95% CI)':<34} {'keyword baseline (95% CI)':<34}")
    lex, base = scores(rows, lexical), scores(rows, keyword)
    for name in ("accuracy", "precision", "recall"):
        print(f"{name:<10} {rate(*lex[name]):<34} {rate(*base[name]):<34}")
    for field in ("kind", "style"):
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            groups[r[field]].append(r)
        print(f"\naccuracy by {field}")
        for key, members in sorted(groups.items()):
            lk = sum(lexical(r["reply"]) == r["refused"] for r in members)
            bk = sum(keyword(r["reply"]) == r["refused"] for r in members)
            print(f"  {key:<26} lexical {rate(lk, len(members)):<32} keyword {rate(bk, len(members))}")
    print("\nlexical misses")
    for r in rows:
        if lexical(r["reply"]) != r["refused"]:
            label = "refusal" if r["refused"] else "not a refusal"
            found = matched_phrase(r["reply"])
            print(f"  {r['id']} ({r['kind']}, {label}) {r['reply'][:70]!r} matched={found!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
