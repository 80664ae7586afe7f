"""Small real runs shared by the export, assign, diff and eval tests (built once per session).

``full`` is 300 BailBench rows: 260 drawn at random from every category but Malware/Hacking plus 40
Malware/Hacking prompts. ``without_malware`` is the same 260 rows alone, so a diff from it to
``full`` has one known added category. ``heldout`` is 60 BailBench rows in neither run.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
BAILBENCH = ROOT / "data" / "bailbench.csv"
ADDED_CATEGORY = "Malware/Hacking"


def _frames() -> dict[str, pl.DataFrame]:
    data = pl.read_csv(BAILBENCH).with_row_index("id")
    data = data.with_columns(pl.col("id").cast(pl.String))
    shuffled = data.sample(fraction=1.0, shuffle=True, seed=7)
    others = shuffled.filter(pl.col("category") != ADDED_CATEGORY)
    added = shuffled.filter(pl.col("category") == ADDED_CATEGORY)
    base = others.head(260)
    full = pl.concat([base, added.head(40)])
    heldout = pl.concat([others.slice(260, 50), added.slice(40, 10)])
    return {"without_malware": base, "full": full, "heldout": heldout}


def build_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write the inputs and build the two runs under the session's temporary folder (once)."""
    from bailclio.config import Config
    from bailclio.pipeline import run
    from bailclio.rundir import is_run_dir

    root = tmp_path_factory.getbasetemp() / "small_runs"
    root.mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in _frames().items():
        csv = root / f"{name}.csv"
        if not csv.exists():
            frame.select("id", "content", "subcategory", "category").write_csv(csv)
        paths[f"{name}_csv"] = csv
        if name == "heldout":
            continue
        out = root / name
        if not is_run_dir(out):
            run(csv, out, Config(), force=True, progress=False)
        paths[name] = out
    return paths
