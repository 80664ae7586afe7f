"""``bailclio assign``: placing new rows in an existing run's taxonomy with real embeddings, and
refusing rows that fit none of its leaves."""

from __future__ import annotations

import random
import re
import shutil
import statistics
from pathlib import Path

import polars as pl
import pytest
from support.small_runs import build_runs  # noqa: E402

from bailclio.cli import main
from bailclio.rundir import load_run
from bailclio.taxonomy.assign_output import read_output_run

ROOT = Path(__file__).resolve().parents[2]
OFF_TOPIC = [
    (
        "code",
        "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    ),
    (
        "recipe",
        "Preheat the oven to 180C. Whisk 3 eggs with 150 g sugar, fold in 150 g flour and bake 25 minutes.",
    ),
]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def assigned(runs, tmp_path_factory):
    """Held-out BailBench rows plus two off-topic texts and one empty row, assigned once."""
    folder = tmp_path_factory.mktemp("assign")
    held = pl.read_csv(runs["heldout_csv"], schema_overrides={"id": pl.String})
    extra = pl.DataFrame(
        {
            "id": [f"off-{name}" for name, _ in OFF_TOPIC] + ["empty"],
            "content": [text for _, text in OFF_TOPIC] + [""],
            "subcategory": ["none"] * 3,
            "category": ["none"] * 3,
        }
    )
    new = folder / "new.csv"
    pl.concat([held, extra]).write_csv(new)
    out = folder / "placed.parquet"
    rc = main(["assign", str(runs["full"]), str(new), "--out", str(out), "--quiet"])
    return {"rc": rc, "out": out, "new": new, "held": held}


def test_assign_writes_one_row_per_accepted_input_row(assigned, runs):
    assert assigned["rc"] == 0
    frame = pl.read_parquet(assigned["out"])
    assert frame.height == 62  # 60 held out + 2 off-topic; the empty row is rejected
    for col in ("conversation_id", "leaf_id", "top_id", "path", "is_outlier", "x", "y"):
        assert col in frame.columns
    for col in ("unassigned", "distance", "confidence", "content", "category"):
        assert col in frame.columns
    placed = frame.filter(~pl.col("unassigned"))
    run = load_run(runs["full"])
    leaves = set(run.assignments["leaf_id"].to_list())
    assert set(placed["leaf_id"].to_list()) <= leaves
    for leaf, path, top in zip(placed["leaf_id"], placed["path"], placed["top_id"], strict=True):
        assert list(path) == [n.id for n in run.taxonomy.path(leaf)] and path[0] == top
    assert placed["confidence"].min() > 0 and placed["confidence"].max() <= 1.0
    rejects = assigned["out"].with_name("placed.rejects.jsonl")
    assert rejects.exists() and '"empty text"' in rejects.read_text()
    assert read_output_run(assigned["out"]) == str(runs["full"].resolve())


def test_off_topic_texts_are_left_unassigned(assigned):
    frame = pl.read_parquet(assigned["out"])
    off = frame.filter(pl.col("conversation_id").str.starts_with("off-"))
    assert off["unassigned"].to_list() == [True, True]
    assert off["leaf_id"].null_count() == 2 and off["is_outlier"].all()
    held = frame.filter(~pl.col("conversation_id").str.starts_with("off-"))
    assert held["unassigned"].mean() < 0.2
    assert held["distance"].median() < off["distance"].min()


@pytest.mark.parametrize("method", ["knn", "centroid"])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_assigned_leaves_mostly_hold_the_rows_true_category(fixed_runs, depth, method, tmp_path):
    """On a run whose leaves are BailBench's subcategories and whose tops are its categories
    (tests/support/depth_runs.py), held-out prompts of those subcategories land in their own category and
    subcategory far more often than the same placements shuffled, and few are refused."""
    out = tmp_path / "placed.parquet"
    argv = ["assign", str(fixed_runs.run(depth)), str(fixed_runs.heldout(depth)), "--out", str(out)]
    assert main([*argv, "--quiet", "--method", method]) == 0
    frame = pl.read_parquet(out)
    placed = frame.filter(~pl.col("unassigned"))
    assert placed.height >= 0.9 * frame.height  # the threshold is the run's own 95th percentile

    def accuracy(names: list[str], truth: str) -> float:
        return sum(a == b for a, b in zip(names, placed[truth], strict=True)) / placed.height

    rng = random.Random(0)
    for level, truth, floor in (("top_name", "category", 0.7), ("leaf_name", "subcategory", 0.4)):
        hit = accuracy(placed[level].to_list(), truth)
        shuffled = []
        for _ in range(20):
            names = placed[level].to_list()
            rng.shuffle(names)
            shuffled.append(accuracy(names, truth))
        chance = statistics.median(shuffled)
        assert hit >= floor and hit >= chance + 0.3, (truth, hit, chance)


def test_csv_output_and_quantile_one_never_leaves_rows_unassigned(assigned, runs, tmp_path, capsys):
    out = tmp_path / "all.csv"
    argv = ["assign", str(runs["full"]), str(assigned["new"]), "--out", str(out), "--quiet"]
    assert main([*argv, "--threshold-quantile", "1", "--method", "centroid"]) == 0
    printed = capsys.readouterr().out
    assert "(unassigned)" in printed and "0 unassigned" in printed
    frame = pl.read_csv(out)
    assert frame.height == 62 and frame["leaf_id"].null_count() == 0


def test_a_different_embedding_model_is_refused(assigned, runs, capsys):
    argv = ["assign", str(runs["full"]), str(assigned["new"]), "--embedding-model", "paraphrase-MiniLM-L3-v2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not the run's embedding model" in err


def test_a_run_without_embeddings_is_refused(assigned, runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs["full"], broken)
    (broken / "embeddings.npy").unlink()
    assert main(["assign", str(broken), str(assigned["new"]), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "embeddings.npy is missing" in err


def test_everyday_requests_are_refused_while_held_out_rows_are_placed(assigned, runs, tmp_path, capsys):
    """The threshold is calibrated on the run's own rows only; everyday requests to an assistant
    (data/neutral_requests.csv: trivia, puzzles, coding and writing help, recipes, travel) are far
    from every bail situation and most are refused, while held-out BailBench rows are placed. The
    summary reports the abstention rate and the calibration's expected placement rate."""
    out = tmp_path / "neutral.parquet"
    neutral = ROOT / "data" / "neutral_requests.csv"
    assert main(["assign", str(runs["full"]), str(neutral), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    frame = pl.read_parquet(out)
    refused = frame["unassigned"].mean()
    held = pl.read_parquet(assigned["out"]).filter(~pl.col("conversation_id").str.starts_with("off-"))
    assert refused >= 0.6 and held["unassigned"].mean() <= 0.2, (refused, held["unassigned"].mean())
    assert f"abstention rate {100 * refused:.1f}%" in printed
    expected = re.search(r"calibrated so that ([\d.]+)% of rows like the run's own are placed", printed)
    assert expected and 90.0 <= float(expected.group(1)) <= 100.0  # the default quantile is 0.95
