"""``bailclio report``: one self-contained HTML page of the study's figures, and its numbers as CSV.

The page has no script and loads nothing (a Content-Security-Policy forbids it); figures are SVG
data URIs; every text from the data is escaped.
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.outputs import check_output_file
from bailclio.report.data import collect, input_files, read_detect
from bailclio.report.figures import interval_plot

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def interval(row: dict[str, Any]) -> str:
    return f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]%"


def table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped here."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{esc(c)}</td>" if i in numeric else f"<td>{esc(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(uri: str, alt: str) -> str:
    return f'<p><img src="{esc(uri)}" alt="{esc(alt)}"></p>'


def _labelled(frame: pl.DataFrame) -> pl.DataFrame:
    label = pl.when(pl.col("order").is_in(["both", "-"])).then(pl.col("method"))
    return frame.with_columns(label.otherwise(pl.col("method") + " " + pl.col("order")).alias("label"))


def rates_section(numbers: pl.DataFrame) -> str:
    rates = _labelled(numbers.filter(pl.col("section") == "rates"))
    parts = ["<h2>Bail rate per method and prompt order</h2>"]
    bail = rates.filter(pl.col("measure") == "bail")
    parts.append(
        figure(interval_plot(bail, "label", "Bail rate", "bail rate (95% Wilson interval)"), "bail rates")
    )
    main = rates.filter(pl.col("order").is_in(["both", "-"]))
    titles = {"refusal": "Refusal rate", "no_refusal_bail": "No-refusal bail rate (bailed, did not refuse)"}
    for measure, title in titles.items():
        sub = main.filter(pl.col("measure") == measure)
        parts.append(f"<h2>{esc(title)}</h2>")
        if sub.height == 0:
            parts.append("<p class='note'>No reply was classified for refusal (detect --refusal none).</p>")
            continue
        parts.append(
            figure(interval_plot(sub, "label", title, f"{title.lower()} (95% Wilson interval)"), title)
        )
    rows = [
        [r["model"], r["label"], r["measure"], f"{r['count']}/{r['n']}", pct(r["rate"]), interval(r)]
        for r in rates.iter_rows(named=True)
    ]
    parts.append("<h2>All rates</h2>")
    parts.append(table(["model", "method", "measure", "count/n", "rate", "95% CI"], rows, {3, 4, 5}))
    return "\n".join(parts)


def crosstab_section(numbers: pl.DataFrame) -> str:
    cells = numbers.filter(pl.col("section") == "refusal_x_bail")
    parts = ["<h2>Refusal &times; bail</h2>"]
    if cells.height == 0:
        return parts[0] + "<p class='note'>No reply was classified for refusal.</p>"
    rows = []
    for (model, method), group in cells.group_by(["model", "method"], maintain_order=True):
        by = {r["measure"]: r for r in group.iter_rows(named=True)}
        n = group["n"][0]
        row = [model, method, str(n)]
        for key in (
            "bailed / refused",
            "bailed / did not refuse",
            "did not bail / refused",
            "did not bail / did not refuse",
        ):
            r = by[key]
            row.append(f"{r['count']} ({pct(r['rate'])})")
        rows.append(row)
    headers = ["model", "method", "n", "bailed, refused", "bailed, no refusal", "refused, no bail", "neither"]
    parts.append(table(headers, rows, {2, 3, 4, 5, 6}))
    parts.append("<p class='note'>Scored turns with a refusal verdict; prompt method: both orders' mean.</p>")
    return "\n".join(parts)


def categories_section(numbers: pl.DataFrame) -> str:
    cats = numbers.filter(pl.col("section") == "categories")
    if cats.height == 0:
        return ""
    parts = ["<h2>Share of each top category per model</h2>"]
    uri = interval_plot(
        cats, "category", "Top categories", "share of the model's bails (95% Wilson interval)"
    )
    parts.append(figure(uri, "category shares"))
    headers = ["model", "category", "count/n", "share", "95% CI"]
    tested = cats["q"].drop_nulls().len() > 0
    rows = []
    for r in cats.iter_rows(named=True):
        row = [r["model"], r["category"], f"{r['count']}/{r['n']}", pct(r["rate"]), interval(r)]
        if tested:
            differ = r["models_differ"]
            row.append("" if differ is None else f"{'yes' if differ else 'no'} (q {r['q']:.3g})")
        rows.append(row)
    if tested:
        headers.append("models differ")
        parts.append(
            "<p>Models differ in a category when its mix of models departs from the mix in the "
            "categories where they do not (Benjamini-Hochberg q &le; 0.05): the test of "
            "<code>bailclio compare RUN --by model</code>.</p>"
        )
    parts.append(table(headers, rows, {2, 3, 4}))
    return "\n".join(parts)


def inputs_section(detect_dirs: list[str | Path], run: str | Path | None) -> str:
    rows = []
    for d in detect_dirs:
        s = read_detect(d).summary
        counts = s.get("counts") or {}
        prefix = s.get("prefix") or {}
        rows.append(
            [
                str(d),
                s.get("model"),
                ",".join((s.get("options") or {}).get("methods") or []),
                counts.get("scored_turns"),
                (s.get("refusal") or {}).get("method", "none"),
                prefix.get("path", "-"),
                s.get("finished_at"),
            ]
        )
    headers = ["detect folder", "model", "methods", "scored turns", "refusal", "prefix", "finished"]
    out = "<h2>Inputs</h2>" + table(headers, rows)
    if run is not None:
        out += f"<p>Run: {esc(run)}</p>"
    return out


def render(numbers: pl.DataFrame, detect_dirs: list[str | Path], run: str | Path | None) -> str:
    body = [
        "<h1>Bails and refusals</h1>",
        f"<p class='note'>bailclio report, {esc(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}. "
        "Every interval is a Wilson 95% interval; the numbers are in the CSV beside this page.</p>",
        inputs_section(detect_dirs, run),
        rates_section(numbers),
        crosstab_section(numbers),
        categories_section(numbers),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<title>bailclio report</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    detect_dirs: list[str | Path], out: str | Path, run: str | Path | None = None
) -> dict[str, Any]:
    """Write the page at ``out`` and its numbers at ``out`` with suffix .csv; both replace their
    predecessors only once complete."""
    page = Path(out)
    csv = page.with_suffix(".csv")
    if csv == page:
        raise UserError(f"{page}: --out must not end in .csv (the numbers are written beside it as .csv)")
    inputs = [*input_files(detect_dirs, run), *map(Path, detect_dirs)]
    if run is not None:
        inputs.append(Path(run))
    # outputs.check_output_file: never an input, a run's or detect folder's own file, a device or
    # folder; a symbolic link is written through (its target replaced, the link kept)
    targets = [check_output_file(p, inputs) for p in (page, csv)]
    numbers = collect(detect_dirs, run)
    text = render(numbers, detect_dirs, run)
    buf = io.BytesIO()
    numbers.write_csv(buf)
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    atomic.write_files(
        {
            targets[1]: lambda p: p.write_bytes(buf.getvalue()),
            targets[0]: lambda p: p.write_text(text, encoding="utf-8"),
        }
    )
    return {"html": str(page), "csv": str(csv), "rows": numbers.height}
