"""detect's tables and rates: detections.parquet and bails.parquet frames, the summary's rates."""

from __future__ import annotations

from typing import Any

import polars as pl

from bailclio.detect import protocol
from bailclio.detect.options import METHODS
from bailclio.stats import wilson_interval

DETECTION_SCHEMA: dict[str, Any] = {
    "conversation_id": pl.String,
    "turn": pl.Int64,
    "method": pl.String,
    "order": pl.String,
    "p_bail": pl.Float64,
    "bailed": pl.Boolean,
    "p_refuse": pl.Float64,
    "refused": pl.Boolean,
    "journal": pl.String,
    "reply": pl.String,
    "response": pl.String,
    "scoring": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "error": pl.String,
}


def detections_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    data = {k: [r.get(k) for r in rows] for k in DETECTION_SCHEMA}
    return pl.DataFrame(data, schema=DETECTION_SCHEMA)


def bails_frame(bails: list[dict[str, Any]]) -> pl.DataFrame:
    conv_type = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    if not bails:
        return pl.DataFrame(
            {
                "conversation_id": [],
                "conversation": [],
                "model": [],
                "bail_method": [],
                "bail_turn": [],
                "bail_probability": [],
                "journal": [],
                "p_refuse": [],
                "refused": [],
            },
            schema={
                "conversation_id": pl.String,
                "conversation": conv_type,
                "model": pl.String,
                "bail_method": pl.String,
                "bail_turn": pl.Int64,
                "bail_probability": pl.Float64,
                "journal": pl.String,
                "p_refuse": pl.Float64,
                "refused": pl.Boolean,
            },
        )
    first = [
        "conversation_id",
        "source_conversation_id",
        "conversation",
        "model",
        "bail_method",
        "bail_methods",
        "bail_turn",
        "user_turn",
        "bail_probability",
        "journal",
        "p_refuse",
        "refused",
    ]
    cols = first + [c for b in bails for c in b if c not in first]
    cols = list(dict.fromkeys(cols))
    series = []
    for c in cols:
        values = [b.get(c) for b in bails]
        if c == "conversation":
            series.append(pl.Series(c, values, dtype=conv_type))
            continue
        try:
            series.append(pl.Series(c, values, strict=True))
        except (TypeError, pl.exceptions.PolarsError, OverflowError):
            series.append(pl.Series(c, [None if v is None else str(v) for v in values]))
    return pl.DataFrame(series)


def count_entry(count: int, n: int) -> dict[str, Any]:
    """``{"n", "count", "rate", "ci95"}`` with the Wilson 95% interval."""
    lo, hi = wilson_interval(count, n)
    return {"n": n, "count": count, "rate": (count / n) if n else None, "ci95": [round(lo, 6), round(hi, 6)]}


def refusal_entries(ok: pl.DataFrame) -> dict[str, Any]:
    """The study's three rates over scored rows whose reply has a refusal verdict: ``refusal``,
    ``no_refusal_bail`` (bailed and did not refuse) and ``refusal_without_bail``; None each when
    no reply was classified (``--refusal none``)."""
    names = ("refusal", "no_refusal_bail", "refusal_without_bail")
    if "refused" not in ok.columns:
        return dict.fromkeys(names)
    judged = ok.filter(pl.col("refused").is_not_null() & pl.col("bailed").is_not_null())
    n = judged.height
    if n == 0:
        return dict.fromkeys(names)
    refused, bailed = judged["refused"], judged["bailed"]
    return {
        "refusal": count_entry(int(refused.sum()), n),
        "no_refusal_bail": count_entry(int((bailed & ~refused).sum()), n),
        "refusal_without_bail": count_entry(int((refused & ~bailed).sum()), n),
    }


def rate_entry(frame: pl.DataFrame) -> dict[str, Any]:
    ok = frame.filter(pl.col("error").is_null())
    n = ok.height
    k = int(ok["bailed"].sum() or 0) if n else 0
    lo, hi = wilson_interval(k, n)
    return {
        "n": n,
        "bails": k,
        "rate": (k / n) if n else None,
        "ci95": [round(lo, 6), round(hi, 6)],
        "errors": frame.height - n,
        **refusal_entries(ok),
    }


def method_rates(det: pl.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        sub = det.filter(pl.col("method") == method)
        if sub.height == 0:
            continue
        if method == "prompt":
            entry = rate_entry(sub.filter(pl.col("order") == "both"))
            entry["orders"] = {o: rate_entry(sub.filter(pl.col("order") == o)) for o in protocol.ORDERS}
        else:
            entry = rate_entry(sub)
        out[method] = entry
    return out


def rates_table(rates: dict[str, Any]) -> str:
    """A plain text table of bail rates with 95% Wilson intervals, and the refusal rate and
    no-refusal bail rate where replies were classified."""
    head = f"{'method':<22}{'n':>7}{'bails':>7}{'rate':>9}  {'95% CI':<18}{'errors':>7}"
    refusals = any((e.get("refusal") is not None) for e in rates.values())
    if refusals:
        head += f"  {'refusal':>8}  {'no-refusal bail':>15}"
    lines = [head, "-" * len(head)]

    def pct(e: dict[str, Any] | None) -> str:
        return "-" if e is None or e["rate"] is None else f"{100 * e['rate']:.2f}%"

    def line(name: str, e: dict[str, Any]) -> str:
        ci = f"[{100 * e['ci95'][0]:.2f}, {100 * e['ci95'][1]:.2f}]%"
        text = f"{name:<22}{e['n']:>7}{e['bails']:>7}{pct(e):>9}  {ci:<18}{e['errors']:>7}"
        if refusals:
            text += f"  {pct(e.get('refusal')):>8}  {pct(e.get('no_refusal_bail')):>15}"
        return text

    for method, e in rates.items():
        lines.append(line(method, e))
        for order, oe in (e.get("orders") or {}).items():
            lines.append(line(f"  {method} {order}", oe))
    return "\n".join(lines)
