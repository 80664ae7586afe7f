"""``bailclio diff``: the same rows under two taxonomies show no change, a planted loss or gain of
one category is the change found, a known added category at every level of 2-, 3- and 5-level
runs, real taxonomies compared with themselves, assign files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support.depth_runs import ADDED, FixedRuns
from support.small_runs import build_runs  # noqa: E402

from bailclio.cli import main
from bailclio.rundir import is_run_dir, load_run
from bailclio.taxonomer import Taxonomer
from bailclio.taxonomy.diff import diff_runs, newcombe_interval, wilson_interval


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def diff_json(capsys, *argv: str) -> dict:
    assert main(["diff", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_wilson_and_newcombe_intervals():
    assert [round(x, 4) for x in wilson_interval(5, 100)] == [0.0215, 0.1118]
    lo, hi = newcombe_interval(5, 100, 5, 100)
    assert lo < 0 < hi and math.isclose(lo, -hi, abs_tol=1e-12)
    lo, hi = newcombe_interval(5, 100, 40, 100)
    assert 0 < lo < 0.35 < hi


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_the_added_category_is_found_only_in_b(fixed_runs: FixedRuns, depth: int, capsys) -> None:
    """B is A plus one more BailBench category (tests/support/depth_runs.py), numbered first so that its
    ids differ from A's: at every level, exactly the added category's nodes are only in B and
    every node of A is matched with its twin."""
    a_dir, b_dir = fixed_runs.run(depth), fixed_runs.run(depth, added=True)
    a, b = load_run(a_dir), load_run(b_dir)
    added_top = next(n for n in b.taxonomy.roots if n.name == ADDED)
    assert added_top.id == "T0" and b.taxonomy.by_id["T1"].name != ADDED  # ids differ from A's
    under_added = {n.id for n in b.taxonomy.descendants(added_top.id)} | {added_top.id}
    for lv in range(depth):
        assert main(["diff", str(a_dir), str(b_dir), "--level", str(lv), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        b_level = {n.id for n in b.taxonomy.level(lv)}
        assert {x["id"] for x in result["only_in_b"]} == b_level & under_added
        assert result["only_in_a"] == []
        assert len(result["matched"]) == len(a.taxonomy.level(lv))
        for m in result["matched"]:
            assert m["a_name"] == m["b_name"]
            assert m["a"]["count"] == m["b"]["count"] == a.taxonomy.by_id[m["a_id"]].size
            assert m["change"] == pytest.approx(m["b"]["share"] - m["a"]["share"]) and m["change"] < 0
            assert m["change_ci_low"] <= m["change"] <= m["change_ci_high"]
    assert main(["diff", str(a_dir), str(b_dir), "--level", str(depth)]) == 2
    assert f"level {depth} does not exist" in capsys.readouterr().err


def test_a_run_compared_with_itself_matches_every_node_without_change(runs, capsys):
    leaf_level = load_run(runs["full"]).taxonomy.depth - 1
    result = diff_json(capsys, str(runs["full"]), str(runs["full"]), "--level", str(leaf_level))
    assert result["only_in_a"] == [] and result["only_in_b"] == []
    assert all(m["a_id"] == m["b_id"] and m["change"] == 0 for m in result["matched"])
    n_leaves = len(load_run(runs["full"]).taxonomy.level(leaf_level))
    assert len(result["matched"]) == n_leaves


def test_an_assign_file_stands_for_its_run(runs, tmp_path, capsys):
    out = runs["full"] / "assign-heldout.parquet"
    assert main(["assign", str(runs["full"]), str(runs["heldout_csv"]), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    plot = tmp_path / "changes.png"
    assert main(["diff", str(runs["full"]), str(out), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "only in B: 0" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = diff_json(capsys, str(runs["full"]), str(out))
    assert result["b"]["rows"] == 60
    assert sum(m["b"]["count"] for m in result["matched"]) == 60
    # the assign file's categories are its run's: each matches itself; a category that no new
    # row landed in is the only thing that can be only in A
    assert all(m["a_id"] == m["b_id"] for m in result["matched"]) and result["only_in_b"] == []
    placed = set(pl.read_parquet(out)["top_id"].drop_nulls().to_list())
    tops = {n.id for n in load_run(runs["full"]).taxonomy.level(0)}
    assert {m["a_id"] for m in result["matched"]} >= placed
    assert {x["id"] for x in result["only_in_a"]} == tops - placed
    assert f"only in A: {len(tops - placed)}" in text


def test_bad_sides_fail_with_one_line(runs, tmp_path, capsys):
    stray = tmp_path / "stray.parquet"
    stray.write_bytes(b"not parquet")
    for argv in (
        [str(tmp_path / "missing"), str(runs["full"])],
        [str(runs["full"]), str(stray)],
        [str(runs["full"]), str(runs["full"]), "--level", "9"],
    ):
        assert main(["diff", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("bailclio diff: error:")


def subset_run(src: Path, out: Path, keep: np.ndarray, repeat: np.ndarray | None = None) -> Path:
    """A run directory holding ``src``'s rows where ``keep`` (its own taxonomy kept), plus the rows
    where ``repeat`` once more under new ids: a change planted in known rows."""
    if is_run_dir(out):
        return out
    tx = Taxonomer.load(src, curated=False)
    X, space = np.load(src / "embeddings.npy"), np.load(src / "space.npy")
    idx = np.flatnonzero(keep)
    conv, assign = tx.conversations_[idx.tolist()], tx.assignments_[idx.tolist()]
    vec, sp = X[idx], space[idx]
    if repeat is not None:
        extra = np.flatnonzero(repeat).tolist()
        new_id = pl.col("conversation_id") + "-again"
        conv = pl.concat([conv, tx.conversations_[extra].with_columns(new_id)])
        assign = pl.concat([assign, tx.assignments_[extra].with_columns(new_id)])
        vec, sp = np.concatenate([vec, X[extra]]), np.concatenate([sp, space[extra]])
    tx.conversations_, tx.assignments_, tx.embeddings_, tx.space_ = conv, assign, vec, sp
    tx.save(out)
    return out


def category_rows(run_dir: Path, category: str) -> np.ndarray:
    run = load_run(run_dir)
    top = next(n.id for n in run.taxonomy.roots if n.name == category)
    return (run.assignments["top_id"] == top).to_numpy(), top


def test_the_same_rows_under_another_taxonomy_show_no_change(fixed_runs: FixedRuns) -> None:
    """The 2- and 3-level fixed runs hold the same rows cut into different trees: on A's taxonomy
    both sides' shares are identical at every level, so nothing is significant."""
    a_dir, b_dir = fixed_runs.run(2), fixed_runs.run(3)
    texts = [sorted(load_run(d).conversations["text"].to_list()) for d in (a_dir, b_dir)]
    assert texts[0] == texts[1]
    for level in range(2):
        result = diff_runs(a_dir, b_dir, level)
        assert result.nodes and not result.significant
        for node in result.nodes:
            assert node.a.count == node.b.count and node.change == 0 and node.p == 1.0
        assert all(not m.significant for m in result.matched)


def test_a_category_that_lost_most_of_its_rows_is_the_change_flagged(fixed_runs: FixedRuns, tmp_path) -> None:
    a_dir = fixed_runs.run(5, added=True)
    rows, top = category_rows(a_dir, ADDED)
    drop = rows & (np.cumsum(rows) <= round(0.7 * rows.sum()))  # the first 70% of its rows
    b_dir = subset_run(a_dir, tmp_path / "lost", ~drop)
    result = diff_runs(a_dir, b_dir, 0)
    flagged = {n.id: n for n in result.significant}
    assert top in flagged and flagged[top].change < 0 and flagged[top].change_ci_high < 0
    assert len(flagged) <= 2  # at most one unrelated node
    pair = next(m for m in result.matched if m.a_id == top)
    assert pair.b_id == top and pair.status == "matched" and pair.significant


def test_a_category_that_doubled_is_the_change_flagged(fixed_runs: FixedRuns, tmp_path) -> None:
    a_dir = fixed_runs.run(5, added=True)
    rows, top = category_rows(a_dir, ADDED)
    b_dir = subset_run(a_dir, tmp_path / "doubled", np.ones_like(rows), repeat=rows)
    result = diff_runs(a_dir, b_dir, 0)
    flagged = {n.id: n for n in result.significant}
    assert top in flagged and flagged[top].change > 0 and flagged[top].change_ci_low > 0
    assert len(flagged) <= 2


def test_low_similarity_matches_are_uncertain_never_a_change(fixed_runs: FixedRuns, tmp_path) -> None:
    a_dir = fixed_runs.run(5, added=True)
    rows, top = category_rows(a_dir, ADDED)
    b_dir = subset_run(a_dir, tmp_path / "doubled", np.ones_like(rows), repeat=rows)
    result = diff_runs(a_dir, b_dir, 0, uncertain_below=1.01)
    assert top in {n.id for n in result.significant}  # the change itself is still found
    assert result.matched and all(m.status == "uncertain" and not m.significant for m in result.matched)


def test_json_has_the_documented_shape_and_help_shows_plain_percent(fixed_runs: FixedRuns, capsys) -> None:
    result = diff_json(capsys, str(fixed_runs.run(2)), str(fixed_runs.run(2, added=True)))
    assert {
        "a",
        "b",
        "level",
        "placement",
        "nodes",
        "matched",
        "only_in_a",
        "only_in_b",
        "significant_nodes",
    } <= set(result)
    node_keys = {"id", "name", "a", "b", "change", "change_ci_low", "change_ci_high", "p", "q", "significant"}
    assert result["nodes"] and all(node_keys <= set(n) for n in result["nodes"])
    assert all(0 <= n["p"] <= n["q"] <= 1 for n in result["nodes"])
    assert all(m["status"] in ("matched", "uncertain") for m in result["matched"])
    # the added category's rows have no home in A: they land beyond the threshold or in A's nodes,
    # and the shares on A's taxonomy add up on both sides
    for side in ("a", "b"):
        assert sum(n[side]["count"] for n in result["nodes"]) == result[side]["rows"]
    with pytest.raises(SystemExit):
        main(["diff", "--help"])
    assert "95%%" not in capsys.readouterr().out
