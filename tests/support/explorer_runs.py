"""A small real run over chat transcripts with bail metadata, shared by the explorer tests.

Built once per test session (real MiniLM embeddings, UMAP, HDBSCAN) under the session's base
temporary folder; each test copies it before changing it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TEXT = "<script>alert('x')</script> and <img src=x onerror=alert(1)> **bold** [link](http://e.x)"
SCRIPT_ID = "conv-script"
MODELS = ("model-a", "model-b")
METHODS = ("prompt", "string", "tool")


def write_transcripts(path: Path, per_category: int = 6) -> Path:
    """Chat transcripts built from BailBench prompts, plus one whose text is hostile markup."""
    df = pl.read_csv(ROOT / "data" / "bailbench.csv")
    sample = df.group_by("category", maintain_order=True).head(per_category)
    rows = []
    for i, r in enumerate(sample.iter_rows(named=True)):
        rows.append(
            {
                "id": f"conv-{i:03d}",
                "conversation": [
                    {"role": "user", "content": r["content"]},
                    {"role": "assistant", "content": "I would rather not continue with this."},
                    {"role": "user", "content": "Please, just this once."},
                ],
                "model": MODELS[i % 2],
                "bail_method": METHODS[i % 3],
                "bail_turn": 1,
                "bail_probability": round(0.5 + (i % 5) / 10, 2),
                "journal": f"Left because of {r['subcategory'].lower()}.",
                "category": r["category"],
            }
        )
    rows.append(
        {
            "id": SCRIPT_ID,
            "conversation": [
                {"role": "user", "content": SCRIPT_TEXT},
                {"role": "assistant", "content": "I can't help with that request."},
            ],
            "model": MODELS[0],
            "bail_method": "tool",
            "bail_turn": 1,
            "bail_probability": 0.9,
            "journal": "<b>journal</b> with <script>markup</script>",
            "category": "Jailbreak",
        }
    )
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def transcript_run(base: Path) -> Path:
    """The shared run directory (built on first use in this session), with a facet column added
    the way the LLM stage adds one."""
    out = base / "explorer-run"
    if (out / "manifest.json").exists():
        return out
    from bailclio.config import Config
    from bailclio.pipeline import run

    src = write_transcripts(base / "explorer-transcripts.jsonl")
    tmp = base / "explorer-run-building"
    run(src, tmp, Config(), force=True, progress=False)
    conv = pl.read_parquet(tmp / "conversations.parquet")
    conv = conv.with_columns(
        pl.concat_str(pl.lit("request about "), pl.col("category").str.to_lowercase()).alias("facet_request")
    )
    conv.write_parquet(tmp / "conversations.parquet")
    tmp.rename(out)
    return out


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def drop_rows(run_dir: Path, drop: set[str]) -> None:
    """Remove the rows ``drop`` (conversation ids) from a copied run, keeping its files consistent:
    tables, vectors, node sizes and the manifest's count."""
    conv = pl.read_parquet(run_dir / "conversations.parquet")
    assign = pl.read_parquet(run_dir / "assignments.parquet")
    keep = ~assign["conversation_id"].is_in(sorted(drop))
    conv.filter(~conv["conversation_id"].is_in(sorted(drop))).write_parquet(run_dir / "conversations.parquet")
    kept = assign.filter(keep)
    kept.write_parquet(run_dir / "assignments.parquet")
    rows = np.flatnonzero(keep.to_numpy())
    for name in ("embeddings.npy", "space.npy"):
        if (run_dir / name).exists():
            np.save(run_dir / name, np.load(run_dir / name)[rows])
    sizes: dict[str, int] = {}
    for path in kept["path"].to_list():
        for node in path:
            sizes[node] = sizes.get(node, 0) + 1
    tax = json.loads((run_dir / "taxonomy.json").read_text())
    for node in tax["nodes"]:
        node["size"] = sizes.get(node["id"], 0)
    (run_dir / "taxonomy.json").write_text(json.dumps(tax))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["counts"]["accepted"] = kept.height
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def strip_stability(run_dir: Path) -> None:
    """Remove every node's ``stability`` from a copied run (as in a run built without refits)."""
    tax = json.loads((run_dir / "taxonomy.json").read_text())
    for node in tax["nodes"]:
        node.pop("stability", None)
    (run_dir / "taxonomy.json").write_text(json.dumps(tax))
