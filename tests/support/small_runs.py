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


def tiny_run(out: Path, n: int = 8) -> Path:
    """A small run directory written by bailclio's own run-directory writer, with a fixed two-level
    tree (two tops, one leaf each) and random vectors: for the tests of what commands may read and
    write, which need a valid run, not a clustering."""
    import numpy as np

    from bailclio import rundir
    from bailclio.taxonomy.model import Node, Taxonomy

    ids = [f"c{i}" for i in range(n)]
    leaf = ["L0" if i % 2 == 0 else "L1" for i in range(n)]
    top = {"L0": "T0", "L1": "T1"}
    half = {"L0": (n + 1) // 2, "L1": n // 2}
    nodes = [
        Node("T0", None, 0, "Weapons", size=half["L0"]),
        Node("T1", None, 0, "Fraud", size=half["L1"]),
        Node("L0", "T0", 1, "Bomb making", size=half["L0"], exemplar_ids=[ids[0]]),
        Node("L1", "T1", 1, "Phishing", size=half["L1"], exemplar_ids=[ids[1]]),
    ]
    conversations = pl.DataFrame(
        {
            "conversation_id": ids,
            "text": [f"=cmd|' /C calc'!A{i} request {i}" if i == 0 else f"request {i}" for i in range(n)],
            "source_line": list(range(2, n + 2)),
        }
    )
    assignments = pl.DataFrame(
        {
            "conversation_id": ids,
            "leaf_id": leaf,
            "top_id": [top[x] for x in leaf],
            "path": [[top[x], x] for x in leaf],
            "is_outlier": [False] * n,
            "outlier_score": np.zeros(n, dtype=np.float32),
            "x": np.arange(n, dtype=np.float32),
            "y": np.arange(n, dtype=np.float32),
        }
    )
    vectors = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_tables(
        out,
        conversations=conversations,
        assignments=assignments,
        taxonomy=Taxonomy(nodes),
        embeddings=vectors,
        space=vectors[:, :2],
    )
    counts = {"rows_read": n, "rejected": 0, "accepted": n, "levels": 2, "leaves": 2, "top": 2}
    manifest = {"format_version": 2, "counts": counts, "input": {"shape": "text"}, "config": {}}
    rundir.write_manifest(out, manifest)
    return out


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The bytes of every file directly in ``run_dir``, to check a run survived untouched."""
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}
