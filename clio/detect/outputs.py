"""detect's tables and rates: detections.parquet and bails.parquet frames, the summary's rates."""

from __future__ import annotations

from typing import Any

import polars as pl

from bailclio.detect import protocol, scoring
from bailclio.detect.options import METHODS

DETECTION_SCHEMA: dict[str, Any] = {
    "conversation_id": pl.String,
    "turn": pl.Int64,
    "method": pl.String,
    "order": pl.String,
    "p_bail": pl.Float64,
    "bailed": pl.Boolean,
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
            },
            schema={
                "conversation_id": pl.String,
                "conversation": conv_type,
                "model": pl.String,
                "bail_method": pl.String,
                "bail_turn": pl.Int64,
                "bail_probability": pl.Float64,
                "journal": pl.String,
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


def rate_entry(frame: pl.DataFrame) -> dict[str, Any]:
    ok = frame.filter(pl.col("error").is_null())
    n = ok.height
    k = int(ok["bailed"].sum() or 0) if n else 0
    lo, hi = scoring.wilson_interval(k, n)
    return {
        "n": n,
        "bails": k,
        "rate": (k / n) if n else None,
        "ci95": [round(lo, 6), round(hi, 6)],
        "errors": frame.height - n,
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
    """A plain text table of bail rates with 95% Wilson intervals."""
    head = f"{'method':<22}{'n':>7}{'bails':>7}{'rate':>9}  {'95% CI':<18}{'errors':>7}"
    lines = [head, "-" * len(head)]

    def line(name: str, e: dict[str, Any]) -> str:
        rate = "-" if e["rate"] is None else f"{100 * e['rate']:.2f}%"
        ci = f"[{100 * e['ci95'][0]:.2f}, {100 * e['ci95'][1]:.2f}]%"
        return f"{name:<22}{e['n']:>7}{e['bails']:>7}{rate:>9}  {ci:<18}{e['errors']:>7}"

    for method, e in rates.items():
        lines.append(line(method, e))
        for order, oe in (e.get("orders") or {}).items():
            lines.append(line(f"  {method} {order}", oe))
    return "\n".join(lines)
