"""The numbers of ``bailclio report``: read detect folders (and a run), give one long table.

Every figure and table of the page, and report.csv, come from :func:`collect`: one row per
(section, source, model, method, order, measure, category) with ``n``, ``count``, ``rate`` and
the Wilson 95% interval ``ci_low`` / ``ci_high``.

* section ``rates``: from each detect folder's summary.json, per method (and prompt order):
  ``bail``, and where replies were classified ``refusal``, ``no_refusal_bail``,
  ``refusal_without_bail``.
* section ``refusal_x_bail``: the 2 x 2 table of bailed x refused per method (order ``both``
  for the prompt method), counts over the scored rows with a refusal verdict; ``rate`` is the
  cell's share of them.
* section ``categories`` (with a run): each top-level category's share of each model's bails
  in the run (the run's ``model`` column; one group ``all`` without one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bailclio import rundir
from bailclio.errors import UserError
from bailclio.stats import wilson_interval

COLUMNS = (
    "section",
    "source",
    "model",
    "method",
    "order",
    "measure",
    "category",
    "n",
    "count",
    "rate",
    "ci_low",
    "ci_high",
    "q",
    "models_differ",
)
REFUSAL_MEASURES = ("refusal", "no_refusal_bail", "refusal_without_bail")
CELLS = (
    ("bailed", "refused"),
    ("bailed", "did not refuse"),
    ("did not bail", "refused"),
    ("did not bail", "did not refuse"),
)


@dataclass
class DetectFolder:
    path: Path
    summary: dict[str, Any]
    label: str  # the model's name on the page (made unique over the folders)


def read_detect(path: str | Path) -> DetectFolder:
    p = Path(path)
    summary_path = p / rundir.DETECT_SUMMARY
    if not p.is_dir():
        raise UserError(f"{p}: not a directory (expected a bailclio detect output folder)")
    if not summary_path.is_file():
        raise UserError(f"{p}: not a detect output folder (no {rundir.DETECT_SUMMARY})")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{summary_path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{summary_path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(summary, dict) or summary.get("command") != "detect":
        raise UserError(f'{summary_path}: not a detect summary (no "command": "detect")')
    if not isinstance(summary.get("rates"), dict):
        raise UserError(f"{summary_path}: field 'rates' is missing or not an object")
    return DetectFolder(p, summary, str(summary.get("model") or p.name))


def unique_labels(folders: list[DetectFolder]) -> None:
    """Folders of the same model are told apart by their folder name."""
    seen: dict[str, int] = {}
    for f in folders:
        seen[f.label] = seen.get(f.label, 0) + 1
    for f in folders:
        if seen[f.label] > 1:
            f.label = f"{f.label} ({f.path.name})"


def _row(section: str, source: str, model: str, method: str, order: str, measure: str, **kw: Any):
    n, count = int(kw.get("n") or 0), int(kw.get("count") or 0)
    lo, hi = wilson_interval(count, n)
    return {
        "section": section,
        "source": source,
        "model": model,
        "method": method,
        "order": order,
        "measure": measure,
        "category": kw.get("category", ""),
        "n": n,
        "count": count,
        "rate": (count / n) if n else None,
        "ci_low": lo,
        "ci_high": hi,
        "q": kw.get("q"),
        "models_differ": kw.get("models_differ"),
    }


def _entry_rows(f: DetectFolder, method: str, order: str, entry: dict[str, Any]) -> list[dict]:
    src = str(f.path)
    rows = [_row("rates", src, f.label, method, order, "bail", n=entry.get("n"), count=entry.get("bails"))]
    for measure in REFUSAL_MEASURES:
        sub = entry.get(measure)
        if isinstance(sub, dict):
            rows.append(_row("rates", src, f.label, method, order, measure, n=sub["n"], count=sub["count"]))
    return rows


def _table_rows(f: DetectFolder, method: str, entry: dict[str, Any]) -> list[dict]:
    ref, nrb, rwb = (entry.get(m) for m in REFUSAL_MEASURES)
    if not (isinstance(ref, dict) and isinstance(nrb, dict) and isinstance(rwb, dict)):
        return []
    n = int(ref["n"])
    both = int(ref["count"]) - int(rwb["count"])
    counts = (both, int(nrb["count"]), int(rwb["count"]), n - both - int(nrb["count"]) - int(rwb["count"]))
    return [
        _row("refusal_x_bail", str(f.path), f.label, method, "both", f"{b} / {r}", n=n, count=c)
        for (b, r), c in zip(CELLS, counts, strict=True)
    ]


def detect_rows(folders: list[DetectFolder]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in folders:
        for method, entry in f.summary["rates"].items():
            if not isinstance(entry, dict):
                continue
            order = "both" if method == "prompt" else "-"
            rows += _entry_rows(f, method, order, entry)
            for name, sub in (entry.get("orders") or {}).items():
                rows += _entry_rows(f, method, name, sub)
        for method, entry in f.summary["rates"].items():
            if isinstance(entry, dict):
                rows += _table_rows(f, method, entry)
    return rows


def category_rows(run_path: str | Path) -> list[dict[str, Any]]:
    """Each top-level category's share of each model's rows in the run."""
    run = rundir.load_run(run_path)
    conv = run.conversations
    models = conv["model"].cast(pl.String).fill_null("(none)") if "model" in conv.columns else None
    frame = pl.DataFrame(
        {
            "conversation_id": conv["conversation_id"],
            "model": models if models is not None else ["all"] * conv.height,
        }
    ).join(run.assignments.select("conversation_id", "top_id"), on="conversation_id", how="inner")
    names = {n.id: n.name for n in run.taxonomy.roots}
    tested = _models_differ(run) if models is not None else {}
    rows = []
    for (model,), group in frame.group_by(["model"], maintain_order=True):
        n = group.height
        counts = group["top_id"].value_counts()
        by_id = dict(zip(counts["top_id"].to_list(), counts["count"].to_list(), strict=True))
        for node_id, name in names.items():
            rows.append(
                _row(
                    "categories",
                    str(run_path),
                    str(model),
                    "-",
                    "-",
                    "share",
                    n=n,
                    count=by_id.get(node_id, 0),
                    category=name,
                    **tested.get(node_id, {}),
                )
            )
    return rows


def _models_differ(run: rundir.Run) -> dict[str, dict[str, Any]]:
    """Per top node, whether the models differ there: ``bailclio compare RUN --by model``'s own
    test (q, significant); empty when the run has fewer than two models."""
    from bailclio.taxonomy.compare import compare_groups

    if run.conversations["model"].drop_nulls().n_unique() < 2:
        return {}
    result = compare_groups(run, "model", level=0)
    return {n.id: {"q": n.q, "models_differ": n.significant} for n in result.nodes}


def collect(detect_dirs: list[str | Path], run: str | Path | None = None) -> pl.DataFrame:
    folders = [read_detect(d) for d in detect_dirs]
    unique_labels(folders)
    rows = detect_rows(folders)
    if run is not None:
        rows += category_rows(run)
    return pl.DataFrame(rows, schema={c: _DTYPES.get(c, pl.String) for c in COLUMNS}, orient="row")


_DTYPES = {
    "n": pl.Int64,
    "count": pl.Int64,
    "rate": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "q": pl.Float64,
    "models_differ": pl.Boolean,
}


def input_files(detect_dirs: list[str | Path], run: str | Path | None) -> list[Path]:
    """The files the report reads (an output path must not be one of them)."""
    files = [
        Path(d) / name
        for d in detect_dirs
        for name in (rundir.DETECT_SUMMARY, rundir.DETECTIONS, rundir.BAILS)
    ]
    if run is not None:
        files += [Path(run) / name for name in rundir.REQUIRED]
    return files
