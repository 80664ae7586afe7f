"""``bailclio compare``: per-node shares of each group with intervals, k x 2 tests, BH correction.

The runs have a tree fixed by construction (tests/support/depth_runs.py: each top category one
BailBench category, each leaf one subcategory of 6 prompts), and the grouping columns are written
onto them, so which nodes the groups differ on is known: a category whose rows all belong to one
group, or groups split half and half in every leaf.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from bailclio.cli import main
from bailclio.errors import UserError
from bailclio.rundir import CONVERSATIONS, load_run
from bailclio.stats import benjamini_hochberg, composition_test, contingency_test, k_by_2_test
from bailclio.taxonomy.compare import GroupShare, NodeComparison, compare_groups, hierarchical_families

PLANTED = "Physical Harm"


def with_column(src: Path, dest: Path, name: str, values_of) -> Path:
    """A copy of run ``src`` whose conversations carry column ``name``: ``values_of(rows)`` gives
    one value per row of the conversations table (rows carry category, leaf_id, rank in leaf)."""
    shutil.copytree(src, dest)
    conv = pl.read_parquet(dest / CONVERSATIONS)
    leaf = dict(load_run(src).assignments.select("conversation_id", "leaf_id").iter_rows())
    rows = conv.select("conversation_id", "category").with_columns(
        pl.col("conversation_id").replace_strict(leaf).alias("leaf_id")
    )
    rows = rows.with_columns(pl.int_range(pl.len()).over("leaf_id").alias("rank"))
    conv.with_columns(pl.Series(name, values_of(rows))).write_parquet(dest / CONVERSATIONS)
    return dest


def planted_model(rows: pl.DataFrame) -> list[str]:
    """Every row of the planted category is model B; elsewhere A and B alternate within a leaf."""
    return [
        "B" if cat == PLANTED else ("A" if rank % 2 == 0 else "B")
        for cat, rank in rows.select("category", "rank").iter_rows()
    ]


def balanced_model(rows: pl.DataFrame) -> list[str | None]:
    """Half A, half B in every leaf; the odd row of an odd-sized leaf has no model."""
    sizes = dict(rows.group_by("leaf_id").len().iter_rows())
    out: list[str | None] = []
    for leaf, rank in rows.select("leaf_id", "rank").iter_rows():
        if sizes[leaf] % 2 and rank == sizes[leaf] - 1:
            out.append(None)
        else:
            out.append("A" if rank % 2 == 0 else "B")
    return out


@pytest.fixture(scope="module")
def planted(fixed_runs, tmp_path_factory) -> Path:
    return with_column(fixed_runs.run(5), tmp_path_factory.mktemp("cmp") / "planted", "model", planted_model)


@pytest.fixture(scope="module")
def balanced(fixed_runs, tmp_path_factory) -> Path:
    return with_column(
        fixed_runs.run(5), tmp_path_factory.mktemp("cmp") / "balanced", "model", balanced_model
    )


def planted_top(run) -> str:
    return next(n.id for n in run.taxonomy.level(0) if n.name == PLANTED)


def test_a_category_made_of_one_group_is_the_most_significant_top_node(planted):
    run = load_run(planted)
    result = compare_groups(run, "model", level=0)
    node = result.node(planted_top(run))
    assert node.significant and node.q <= 0.05
    assert node.groups["A"].n == 0 and node.groups["B"].n == node.groups["B"].total - sum(
        n.groups["B"].n for n in result.nodes if n.id != node.id
    )
    assert node.p == min(n.p for n in result.nodes)


def test_against_the_typical_mix_only_the_planted_category_differs(planted, capsys):
    run = load_run(planted)
    everything = compare_groups(run, "model", level=0, reference="all")
    typical = compare_groups(run, "model", level=0, reference="typical")
    assert [n.id for n in compare_groups(run, "model", level=0).significant] == [planted_top(run)]
    # the other categories are half A, half B: B's extra category dilutes its share of them
    assert len(everything.significant) > 1
    assert [n.id for n in typical.significant] == [planted_top(run)]
    assert [n.groups for n in typical.nodes] == [n.groups for n in everything.nodes]
    assert main(["compare", str(planted), "--by", "model", "--reference", "typical"]) == 0
    assert "nodes where they do not differ" in capsys.readouterr().out


def test_groups_split_evenly_in_every_leaf_differ_nowhere(balanced):
    run = load_run(balanced)
    for level in range(run.taxonomy.depth):
        result = compare_groups(run, "model", level=level)
        assert result.significant == []
        assert all(n.groups["A"].n == n.groups["B"].n for n in result.nodes)
    assert result.missing == 1 and "1 rows have no value" in result.notes[0]


def test_counts_shares_and_intervals_add_up(planted):
    run = load_run(planted)
    depth = run.taxonomy.depth
    for level in (0, depth - 1):
        result = compare_groups(run, "model", level=level)
        assert [n.id for n in result.nodes] == sorted(
            [n.id for n in run.taxonomy.level(level)], key=lambda i: (-run.taxonomy.by_id[i].size, i)
        )
        for g in result.groups:
            assert sum(n.groups[g].n for n in result.nodes) == result.group_sizes[g]
        for n in result.nodes:
            for s in n.groups.values():
                assert s.share == pytest.approx(s.n / s.total)
                assert s.ci95[0] <= s.share <= s.ci95[1]
            assert 0 <= n.p <= n.q + 1e-12 and n.q <= 1
            assert n.significant == (n.q <= 0.05)


def test_more_than_two_groups_and_boolean_columns_are_compared(planted, tmp_path):
    three = with_column(
        planted,
        tmp_path / "three",
        "model",
        lambda rows: [
            "C" if cat == PLANTED else "AB"[rank % 2]
            for cat, rank in rows.select("category", "rank").iter_rows()
        ],
    )
    run = load_run(three)
    result = compare_groups(run, "model", level=0)
    assert result.groups == ["A", "B", "C"]
    assert result.node(planted_top(run)).significant
    typical = compare_groups(run, "model", level=0, reference="typical")
    assert [n.id for n in typical.significant] == [planted_top(run)]
    flagged = with_column(
        planted, tmp_path / "bool", "refused", lambda rows: [c == PLANTED for c in rows["category"].to_list()]
    )
    run = load_run(flagged)
    result = compare_groups(run, "refused", level=0)
    assert result.groups == ["false", "true"]
    assert result.node(planted_top(run)).groups["false"].n == 0
    assert result.node(planted_top(run)).significant


def test_below_the_top_only_the_children_of_a_differing_parent_are_tested(planted, capsys):
    run = load_run(planted)
    leaf_level = run.taxonomy.depth - 1
    top_of = dict(zip(run.level_ids(leaf_level), run.level_ids(0), strict=True))
    result = compare_groups(run, "model", level=leaf_level)
    # only the planted category differs at the top: its children are tested, no other node is
    assert {n.id for n in result.nodes if n.tested} == {
        n.id for n in result.nodes if top_of[n.id] == planted_top(run)
    }
    assert all(n.q == 1.0 and not n.significant for n in result.nodes if not n.tested)
    assert any("parents" in note for note in result.notes)
    flat = compare_groups(run, "model", level=leaf_level, testing="flat")
    assert all(n.tested for n in flat.nodes)
    assert [n.groups for n in flat.nodes] == [n.groups for n in result.nodes]
    assert main(["compare", str(planted), "--by", "model", "--level", str(leaf_level)]) == 0
    assert "not tested" in capsys.readouterr().out
    assert main(["compare", str(planted), "--by", "model", "--testing", "flat", "--level", "1"]) == 0
    assert "not tested" not in capsys.readouterr().out


def node(node_id: str, a: int, b: int, total_a: int, total_b: int, p: float) -> NodeComparison:
    shares = {
        "A": GroupShare(a, total_a, a / total_a, (0.0, 1.0)),
        "B": GroupShare(b, total_b, b / total_b, (0.0, 1.0)),
    }
    return NodeComparison(node_id, node_id, 1, shares, p, p, False, "given")


def test_a_shift_between_siblings_opens_a_parent_whose_total_is_unchanged():
    # parent P: A's rows all in X, B's all in Y, the same total in P; parent Q: X2, Y2 even
    kids = [
        node("X", 40, 0, 80, 80, 1e-9),
        node("Y", 0, 40, 80, 80, 1e-9),
        node("X2", 20, 20, 80, 80, 1.0),
        node("Y2", 20, 20, 80, 80, 1.0),
    ]
    parents = [node("P", 40, 40, 80, 80, 1.0), node("Q", 40, 40, 80, 80, 1.0)]
    parent_of = {"X": "P", "Y": "P", "X2": "Q", "Y2": "Q"}
    opened, total = hierarchical_families(kids, parents, parent_of)
    assert (opened, total) == (1, 2)
    assert [k.significant for k in kids] == [True, True, False, False]
    assert [k.tested for k in kids] == [True, True, False, False]


def test_open_families_are_held_to_alpha_times_the_share_of_parents_opened():
    # ten parents, one differs; its child's p of 0.01 would pass 0.05 alone, not at 0.05 / 10
    parents = [node("P0", 30, 0, 300, 300, 1e-12)] + [
        node(f"P{i}", 30, 30, 300, 300, 1.0) for i in range(1, 10)
    ]
    kids = [
        node(f"K{i}", 30 if i else 15, 30 if i else 0, 300, 300, 0.01 if i == 0 else 1.0) for i in range(10)
    ]
    kids.append(node("K0b", 15, 0, 300, 300, 1e-8))
    parent_of = {f"K{i}": f"P{i}" for i in range(10)} | {"K0b": "P0"}
    assert hierarchical_families(kids, parents, parent_of) == (1, 10)
    assert kids[-1].significant and kids[-1].q == pytest.approx(min(1.0, 2e-8 * 10))
    assert not kids[0].significant and kids[0].q == pytest.approx(0.1)


def test_contingency_test_finds_a_different_spread_over_columns():
    assert contingency_test([[30, 5, 5], [5, 5, 30]]).p < 1e-6
    assert contingency_test([[10, 10, 10], [11, 9, 10]]).p > 0.5
    assert contingency_test([[3, 0, 0], [0, 0, 0]]).method == "none"
    with pytest.raises(ValueError):
        contingency_test([[-1, 2], [3, 4]])


def test_json_has_exactly_the_documented_fields(planted, capsys, tmp_path):
    png = tmp_path / "cmp.png"
    assert main(["compare", str(planted), "--by", "model", "--level", "1", "--json", "--plot", str(png)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"by", "level", "groups", "nodes"}
    assert data["by"] == "model" and data["level"] == 1 and data["groups"] == ["A", "B"]
    for node in data["nodes"]:
        assert set(node) == {"id", "name", "level", "groups", "p", "q", "significant"}
        assert node["level"] == 1
        for share in node["groups"].values():
            assert set(share) == {"n", "share", "ci95"} and len(share["ci95"]) == 2
    assert png.read_bytes().startswith(b"\x89PNG")


def test_table_marks_significant_nodes(planted, capsys):
    assert main(["compare", str(planted), "--by", "model"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if PLANTED in ln)
    assert "*" in line
    assert "Benjamini-Hochberg" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "nope"], "no column 'nope'"),
        (["--by", "model", "--level", "9"], "level 9 does not exist"),
        (["--by", "conversation_id"], "distinct values"),
        (["--by", "model", "--plot", "out.svg"], ".png"),
    ],
)
def test_bad_column_or_level_is_one_line_and_exit_2(planted, capsys, args, message):
    assert main(["compare", str(planted), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_one_group_is_nothing_to_compare(planted, tmp_path):
    one = with_column(planted, tmp_path / "one", "model", lambda rows: ["A"] * rows.height)
    with pytest.raises(UserError, match="fewer than two groups"):
        compare_groups(load_run(one), "model")


def test_k_by_2_test_picks_a_test_suited_to_the_counts():
    assert k_by_2_test([[50, 50], [80, 20]]).method == "chi-square"
    assert k_by_2_test([[50, 50], [80, 20]]).p < 0.001
    assert k_by_2_test([[2, 50], [0, 60]]).method == "fisher-exact"
    small_three = k_by_2_test([[4, 20], [0, 25], [1, 30]], seed=3)
    assert small_three.method == "fisher-monte-carlo"
    assert small_three == k_by_2_test([[4, 20], [0, 25], [1, 30]], seed=3)  # seeded: reproducible
    assert k_by_2_test([[10, 10], [10, 10]]).p == pytest.approx(1.0)
    with pytest.raises(ValueError):
        k_by_2_test([[1, 2, 3]])


def test_composition_test_departs_only_from_a_different_mix():
    assert composition_test([50, 50], [1, 1]).p == pytest.approx(1.0)
    assert composition_test([80, 20], [1, 1]).p < 0.001
    assert composition_test([4, 1], [1, 1]).method == "binomial-exact"
    small = composition_test([4, 0, 1], [1, 1, 1], seed=2)
    assert small.method == "fit-monte-carlo" and small == composition_test([4, 0, 1], [1, 1, 1], seed=2)
    assert composition_test([0, 3, 1], [0.5, 0.5, 0]).p == 0.0
    assert composition_test([3, 1, 0], [0.5, 0.5, 0]).p > 0.05
    with pytest.raises(ValueError):
        composition_test([1, 2], [1, 2, 3])


def test_benjamini_hochberg_keeps_order_and_never_lowers_a_p_value():
    ps = [0.001, 0.2, 0.01, 0.04, 0.9]
    qs = benjamini_hochberg(ps)
    assert all(q >= p for p, q in zip(ps, qs, strict=True))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert [qs[i] for i in order] == sorted(qs)
    assert benjamini_hochberg([]) == []
