"""The assign output: the placed rows as a table (assignments.parquet's columns, the placement's,
every level's name, then the input's), written as Parquet (the run named in its metadata) or CSV,
and its summary."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from bailclio import atomic, rundir
from bailclio.errors import UserError
from bailclio.taxonomy.export import conversation_as_json_text, neutralise_formulas
from bailclio.taxonomy.model import level_stems
from bailclio.taxonomy.placement import Placement

if TYPE_CHECKING:
    from bailclio.rundir import Run

META_RUN = b"bailclio.run"
META_MODEL = b"bailclio.embedding_model_key"
RUN_COLUMN = "run_dir"  # assign's CSV output: the run directory it was placed in


@dataclass
class AssignResult:
    frame: pl.DataFrame
    rejects: list[dict[str, Any]]
    threshold: float
    method: str
    embed_stats: dict[str, Any]
    llm: dict[str, Any] | None = None  # with --llm: counts and the back-end's counters
    expected_placed: float = float("nan")  # the calibration's share of in-distribution rows placed


def placement_frame(
    run: Run, conv: pl.DataFrame, p: Placement, extra_columns: list[pl.Series] | None = None
) -> pl.DataFrame:
    """The assign output: assignments.parquet's columns (with ``level_<d>_id`` for each level
    between top and leaf), the placement's (then ``extra_columns``), every level's name
    (``top_name``, ``level_<d>_name``, ``leaf_name``), then the input's."""
    tax = run.taxonomy
    depth = tax.depth
    stems = level_stems(depth)
    per_level = {lv: tax.ids_at(lv, p.leaf_ids) for lv in range(depth)}
    names = {nid: n.name for nid, n in tax.by_id.items()}
    cols: dict[str, Any] = {
        "unassigned": pl.Series(p.unassigned.tolist(), dtype=pl.Boolean),
        "distance": pl.Series(p.distance, dtype=pl.Float32),
        "confidence": pl.Series(p.confidence, dtype=pl.Float32),
    }
    for series in extra_columns or []:
        cols[series.name] = series
    for lv in range(depth):  # top_name, level_<d>_name for each level between, leaf_name
        level_names = [names.get(x) if x else None for x in per_level[lv]]
        cols[f"{stems[lv]}_name"] = pl.Series(level_names, dtype=pl.String)
    frame = rundir.assignments_table(
        tax,
        conv["conversation_id"],
        p.leaf_ids,
        is_outlier=p.is_outlier,
        x=p.xy[:, 0],
        y=p.xy[:, 1],
        level_columns=True,
        extra=cols,
    )
    extra = conv.drop("conversation_id")
    extra = extra.rename({c: f"input_{c}" for c in extra.columns if c in frame.columns})
    return pl.concat([frame, extra], how="horizontal")


def default_out(run: Run, input_path: str | Path) -> Path:
    return run.path / f"assign-{Path(input_path).stem}.parquet"


def write_output(frame: pl.DataFrame, out: Path, run: Run, model_key: str) -> None:
    """Parquet (with the run's path and embedding model in its metadata) or CSV, by extension."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"{out}: output must end in .parquet or .csv")

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            meta = dict(table.schema.metadata or {})
            meta[META_RUN] = str(run.path.resolve()).encode()
            meta[META_MODEL] = model_key.encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        else:  # CSV has no metadata: a column names the run (read by diff)
            text = neutralise_formulas(conversation_as_json_text(frame)).with_columns(
                pl.col("path").list.join("/"), pl.lit(str(run.path.resolve())).alias(RUN_COLUMN)
            )
            text.write_csv(tmp)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(out, write)  # the previous file is replaced only once this one is whole


def read_output_run(path: str | Path) -> str | None:
    """The run directory an assign output belongs to: its Parquet metadata, else its folder."""
    from bailclio.rundir import is_run_dir

    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(p).metadata or {}
        except Exception as exc:
            raise UserError(f"{p}: cannot read Parquet: {exc}".splitlines()[0]) from exc
        if META_RUN in meta and is_run_dir(meta[META_RUN].decode()):
            return meta[META_RUN].decode()
    elif p.suffix.lower() == ".csv":
        try:
            head = pl.read_csv(p, n_rows=1, columns=[RUN_COLUMN], infer_schema_length=0)
        except Exception:  # noqa: BLE001 - no such column: not named, look at the folder
            head = None
        if head is not None and head.height and is_run_dir(str(head[RUN_COLUMN][0])):
            return str(head[RUN_COLUMN][0])
    if is_run_dir(p.parent):
        return str(p.parent)
    return None


def summary(run: Run, frame: pl.DataFrame) -> list[tuple[str, str, int, float]]:
    """(top id, top name, count, share) per top category, then the unassigned row."""
    n = max(frame.height, 1)
    counts = Counter(frame["top_id"].to_list())
    rows = []
    for node in sorted(run.taxonomy.roots, key=lambda nd: (-counts.get(nd.id, 0), nd.id)):
        rows.append((node.id, node.name, counts.get(node.id, 0), counts.get(node.id, 0) / n))
    rows.append(("-", "(unassigned)", counts.get(None, 0), counts.get(None, 0) / n))
    return rows


def print_summary(run: Run, result: AssignResult, out: Path, file: Any = None) -> None:
    file = file or sys.stdout
    frame = result.frame
    print(f"{'id':<6} {'rows':>7} {'share':>7}  category", file=file)
    for nid, name, count, share in summary(run, frame):
        print(f"{nid:<6} {count:>7} {100 * share:6.1f}%  {name}", file=file)
    n_un = int(frame["unassigned"].sum())
    n = frame.height
    expected = result.expected_placed
    rate = f"{100 * expected:.1f}%" if expected == expected else "an unknown share"  # NaN: uncalibrated
    print(
        f"\n{n} rows: {n - n_un} placed by {result.method}, {n_un} unassigned "
        f"(abstention rate {100 * n_un / max(n, 1):.1f}%: farther from the run than the distance "
        f"threshold {result.threshold:.4f}); the threshold is calibrated so that {rate} of rows like "
        f"the run's own are placed (expected in-distribution placement rate); written to {out}",
        file=file,
    )
    llm = result.llm
    if llm:
        st = llm["stats"]
        print(
            f"LLM {llm['model']} over shortlists of {llm['shortlist']} leaves: placed {llm['placed']} "
            f"rows ({llm['disagreed']} differ from the embedding), said none for {llm['none']}, "
            f"failed for {llm['failed']} (embedding placement kept, reason in llm_error); "
            f"{llm['requests']} distinct requests, {st.get('calls', 0)} calls, "
            f"{st.get('cache_hits', 0)} cache hits, {st.get('failures', 0)} failures; "
            f"cache {llm['cache_path']}" + (" (budget reached)" if llm["budget_exhausted"] else ""),
            file=file,
        )
