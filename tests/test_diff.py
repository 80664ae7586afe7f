"""``bailclio diff``: matching two real taxonomies, a known added category, assign files."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest

from bailclio.cli import main
from bailclio.rundir import load_run
from bailclio.taxonomy.diff import newcombe_interval, wilson_interval

sys.path.insert(0, str(Path(__file__).parent))
from small_runs import ADDED_CATEGORY, build_runs  # noqa: E402


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


def test_the_added_category_is_found_only_in_b(runs, capsys):
    result = diff_json(capsys, str(runs["without_malware"]), str(runs["full"]))
    run_b = load_run(runs["full"])
    cats = run_b.conversations["category"].to_list()
    added_per_top = Counter(
        t for t, c in zip(run_b.assignments["top_id"], cats, strict=True) if c == ADDED_CATEGORY
    )
    home = added_per_top.most_common(1)[0][0]
    only_b = {x["id"] for x in result["only_in_b"]}
    assert home in only_b
    in_only_b = sum(n for top, n in added_per_top.items() if top in only_b)
    assert in_only_b >= 0.7 * sum(added_per_top.values())
    # nodes without any added-category row are mostly matched
    clean = {x.id for x in run_b.taxonomy.level(0)} - set(added_per_top)
    assert len(clean & only_b) <= len(clean) // 2
    for m in result["matched"]:
        assert m["a"]["ci_low"] <= m["a"]["share"] <= m["a"]["ci_high"]
        assert m["change"] == pytest.approx(m["b"]["share"] - m["a"]["share"])
        assert m["change_ci_low"] <= m["change"] <= m["change_ci_high"]


def test_a_run_compared_with_itself_matches_every_node_without_change(runs, capsys):
    result = diff_json(capsys, str(runs["full"]), str(runs["full"]), "--level", "2")
    assert result["only_in_a"] == [] and result["only_in_b"] == []
    assert all(m["a_id"] == m["b_id"] and m["change"] == 0 for m in result["matched"])
    n_leaves = len(load_run(runs["full"]).taxonomy.level(2))
    assert len(result["matched"]) == n_leaves


def test_an_assign_file_stands_for_its_run(runs, tmp_path, capsys):
    out = runs["full"] / "assign-heldout.parquet"
    assert main(["assign", str(runs["full"]), str(runs["heldout_csv"]), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    plot = tmp_path / "changes.png"
    assert main(["diff", str(runs["full"]), str(out), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "only in A: 0" in text and "only in B: 0" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = diff_json(capsys, str(runs["full"]), str(out))
    assert result["b"]["rows"] == 60
    assert sum(m["b"]["count"] for m in result["matched"]) == 60
    ids = {m["a_id"] for m in result["matched"]}
    assert {n.id for n in load_run(runs["full"]).taxonomy.level(0)} <= ids


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
