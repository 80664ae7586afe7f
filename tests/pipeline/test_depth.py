"""Every reader of a run directory at 2, 3 and 5 levels: show, the explorer, export, eval, assign
and curation, on runs whose tree is fixed by construction (tests/support/depth_runs.py): each top
category is one BailBench category and each leaf one of its subcategories, so the right answer
is known whatever the machine. (diff at every level: test_diff.py; placement accuracy:
test_assign.py.)"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from support.depth_runs import FANOUTS, OUTLIER_NAME, FixedRuns

from bailclio.cli import main
from bailclio.explorer import ROOTS_ENV
from bailclio.explorer import data as D
from bailclio.rundir import load_run
from bailclio.taxonomy import curation as C
from bailclio.taxonomy.export import export_frame

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
DEPTHS = (2, 3, 5)
LEVEL_COLUMNS = {
    2: ["top_id", "top_name", "leaf_id", "leaf_name"],
    3: ["top_id", "top_name", "level_1_id", "level_1_name", "leaf_id", "leaf_name"],
    5: [
        "top_id",
        "top_name",
        "level_1_id",
        "level_1_name",
        "level_2_id",
        "level_2_name",
        "level_3_id",
        "level_3_name",
        "leaf_id",
        "leaf_name",
    ],
}


def nodes_per_level(depth: int) -> list[int]:
    """Node count per level of the fixed runs: the fan-outs, plus the noise leaf."""
    out, n = [], 1
    for f in FANOUTS[depth]:
        n *= f
        out.append(n)
    out[-1] += 1
    return out


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# --------------------------------------------------------------------------- the runs themselves


@pytest.mark.parametrize("depth", DEPTHS)
def test_fixed_runs_have_the_depth_and_paths_they_are_built_with(fixed_runs: FixedRuns, depth: int) -> None:
    run = load_run(fixed_runs.run(depth))
    tax = run.taxonomy
    assert tax.depth == depth and run.depth == depth
    assert [len(tax.level(lv)) for lv in range(depth)] == nodes_per_level(depth)
    assert "mid_id" not in run.assignments.columns
    for lv in range(depth):
        assert run.level_ids(lv) == [p[lv] for p in run.assignments["path"].to_list()]
        assert sum(n.size for n in tax.level(lv)) == run.assignments.height


# --------------------------------------------------------------------------- show


@pytest.mark.parametrize("depth", DEPTHS)
def test_show_prints_every_node_indented_under_its_parent(fixed_runs: FixedRuns, depth: int, capsys) -> None:
    run_dir = fixed_runs.run(depth)
    tax = load_run(run_dir).taxonomy
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:]:
        if not line.strip():
            break
        stripped = line.lstrip(" ")
        rows[stripped.split()[0]] = (len(line) - len(stripped)) // 2
    assert rows == {n.id: n.level for n in tax.nodes}
    sizes = nodes_per_level(depth)
    assert f"{depth} levels: {sizes[0]} top categories" in out and f"{sizes[-1]} leaves" in out
    assert main(["show", str(run_dir), "--depth", "2"]) == 0
    shown = capsys.readouterr().out.split("\n\n")[0].splitlines()[1:]
    assert len(shown) == sizes[0] + sizes[1]


# --------------------------------------------------------------------------- explorer


@pytest.mark.parametrize("depth", DEPTHS)
def test_explorer_tables_carry_every_level(fixed_runs: FixedRuns, depth: int) -> None:
    run = load_run(fixed_runs.run(depth))
    ex = D.prepare(run)
    assert ex.depth == depth and len(ex.level_names) == depth
    assert ex.level_names[0] == "top" and ex.level_names[-1] == "leaf"
    paths = run.assignments["path"].to_list()
    names = {n.id: n.name for n in run.taxonomy.nodes}
    for lv in range(depth):
        assert ex.frame[f"lvl{lv}"].to_list() == [p[lv] for p in paths]
        assert ex.frame[f"lvl{lv}_name"].to_list() == [names[p[lv]] for p in paths]
        pts, n = D.map_points(ex, lv)
        assert n == run.assignments.height and pts[f"lvl{lv}"].to_list() == [p[lv] for p in paths]
    leaf = run.taxonomy.leaves[0]
    assert set(D.members(ex, leaf.parent_id)["conversation_id"]) >= set(
        D.members(ex, leaf.id)["conversation_id"]
    )
    labels = D.labels_frame(run)
    assert labels.columns[: 2 + 2 * depth] == ["conversation_id", *LEVEL_COLUMNS[depth], "is_outlier"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_explorer_draws_tree_sunburst_and_map_at_any_depth(
    fixed_runs: FixedRuns, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = fixed_runs.run(depth)
    monkeypatch.setenv(ROOTS_ENV, str(run_dir))  # what `bailclio explore RUN` gives the page
    run = load_run(run_dir)
    tax = run.taxonomy
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["runs_root"] = str(run_dir)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {b.key for b in at.button if b.key and b.key.startswith("tree_")} == {
        f"tree_{n.id}" for n in tax.nodes
    }
    sun = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    parents = dict(zip(sun["ids"], sun["parents"], strict=True))
    assert parents == {n.id: n.parent_id or "" for n in tax.nodes}
    assert sun["maxdepth"] == depth
    at.sidebar.radio(key="view").set_value("Map").run()
    assert at.selectbox(key="map_level").options == [D.level_names(depth)[lv] for lv in range(depth)]
    inliers = run.assignments.filter(~pl.col("is_outlier"))
    for lv in range(depth):
        at.selectbox(key="map_level").set_value(lv).run()
        assert not at.exception, [e.value for e in at.exception]
        traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
        coloured = [t for t in traces if t["name"] != "outliers"]
        expected = {p[lv] for p in inliers["path"].to_list()}
        assert len(coloured) == len(expected)
        shown = sorted(html.escape(D.snippet(tax.by_id[i].name, 40)) for i in expected)  # as the legend does
        assert sorted(t["name"] for t in coloured) == shown
    # a node at the deepest level between opens with its breadcrumbs
    node = tax.level(max(depth - 2, 0))[0]
    at.sidebar.selectbox(key="node").set_value(node.id).run()
    at.sidebar.radio(key="view").set_value("Node").run()
    assert not at.exception
    assert {b.key for b in at.button if b.key and b.key.startswith("crumb_")} == {
        f"crumb_{n.id}" for n in tax.path(node.id)
    }


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("depth", DEPTHS)
def test_export_writes_an_id_and_name_column_per_level(fixed_runs: FixedRuns, depth: int, tmp_path) -> None:
    run_dir = fixed_runs.run(depth)
    run = load_run(run_dir)
    out = tmp_path / "labels.csv"
    assert main(["export", str(run_dir), "--format", "csv", "--out", str(out)]) == 0
    frame = pl.read_csv(out, schema_overrides={"conversation_id": pl.String, "id": pl.String})
    assert frame.columns[: 2 + 2 * depth] == ["conversation_id", *LEVEL_COLUMNS[depth], "is_outlier"]
    paths = run.assignments["path"].to_list()
    for lv in range(depth):
        stem = LEVEL_COLUMNS[depth][2 * lv][: -len("_id")]
        assert frame[f"{stem}_id"].to_list() == [p[lv] for p in paths]
        assert frame[f"{stem}_name"].to_list() == [run.taxonomy.by_id[p[lv]].name for p in paths]
    clustered = frame.filter(~pl.col("is_outlier"))
    assert clustered["top_name"].to_list() == clustered["category"].to_list()
    assert clustered["leaf_name"].to_list() == clustered["subcategory"].to_list()
    assert set(frame.filter(pl.col("is_outlier"))["leaf_name"]) == {OUTLIER_NAME}


@pytest.mark.parametrize("depth", DEPTHS)
def test_export_level_stops_the_table_and_names_bailbench_subcategory(
    fixed_runs: FixedRuns, depth: int
) -> None:
    run = load_run(fixed_runs.run(depth))
    for lv in range(depth):
        frame, _ = export_frame(run, "parquet", level=lv)
        level_columns = LEVEL_COLUMNS[depth][: 2 * (lv + 1)]  # ordered by level, top first
        assert frame.columns[: 2 * lv + 4] == ["conversation_id", *level_columns, "is_outlier"]
        bb, _ = export_frame(run, "bailbench", level=lv)
        assert bb["subcategory"].to_list() == [run.taxonomy.by_id[i].name for i in run.level_ids(lv)]
        assert bb["category"].to_list() == [run.taxonomy.by_id[i].name for i in run.level_ids(0)]
    with pytest.raises(Exception, match=f"level {depth} does not exist"):
        export_frame(run, "csv", level=depth)


# --------------------------------------------------------------------------- eval


@pytest.mark.parametrize("depth", DEPTHS)
def test_eval_scores_every_level(fixed_runs: FixedRuns, depth: int, capsys) -> None:
    run_dir = fixed_runs.run(depth)
    argv = [
        "eval",
        str(run_dir),
        "--truth",
        "category",
        "--truth",
        "subcategory",
        "--exclude-outliers",
        "--json",
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["level"], r["truth"]) for r in rows] == [
        (lv, t) for lv in range(depth) for t in ("category", "subcategory")
    ]
    stems = [c[: -len("_id")] for c in LEVEL_COLUMNS[depth][::2]]
    assert [r["level_name"] for r in rows[::2]] == stems
    by = {(r["level"], r["truth"]): r for r in rows}
    # the top level is the category and the leaves are the subcategories, by construction
    assert by[(0, "category")]["ami"] == pytest.approx(1.0) and by[(0, "category")]["purity"] == 1.0
    assert by[(depth - 1, "subcategory")]["ami"] == pytest.approx(1.0)
    for lv in range(depth):
        assert by[(lv, "category")]["n_clusters"] == nodes_per_level(depth)[lv] - (lv == depth - 1)
        assert by[(lv, "category")]["purity"] == 1.0  # every node sits inside one category
    if depth > 2:  # a level between is coarser than the leaves and finer than the tops
        mid = by[(1, "subcategory")]["ami"]
        assert by[(0, "subcategory")]["ami"] < mid < by[(depth - 1, "subcategory")]["ami"]
    assert main(["eval", str(run_dir), "--truth", "category", "--level", str(depth - 1)]) == 0
    table = capsys.readouterr().out
    assert f"{depth - 1}:leaf" in table and "0:top" not in table


# --------------------------------------------------------------------------- assign


@pytest.mark.parametrize("depth", DEPTHS)
def test_assign_gives_new_rows_every_level(fixed_runs: FixedRuns, depth: int, tmp_path) -> None:
    run_dir = fixed_runs.run(depth)
    run = load_run(run_dir)
    out = tmp_path / "placed.csv"
    assert main(["assign", str(run_dir), str(fixed_runs.heldout(depth)), "--out", str(out), "--quiet"]) == 0
    frame = pl.read_csv(out, schema_overrides={"conversation_id": pl.String, "id": pl.String})
    stems = [c[: -len("_id")] for c in LEVEL_COLUMNS[depth][::2]]
    for stem in stems:
        assert f"{stem}_id" in frame.columns and f"{stem}_name" in frame.columns
    assert "mid_id" not in frame.columns
    placed = frame.filter(pl.col("leaf_id").is_not_null())
    assert placed.height > 0.8 * frame.height
    for row in placed.iter_rows(named=True):
        path = [n.id for n in run.taxonomy.path(row["leaf_id"])]
        assert row["path"] == "/".join(path)
        for lv, stem in enumerate(stems):
            assert row[f"{stem}_id"] == path[lv]
            assert row[f"{stem}_name"] == run.taxonomy.by_id[path[lv]].name
    unassigned = frame.filter(pl.col("leaf_id").is_null())
    for stem in stems:
        assert unassigned[f"{stem}_id"].null_count() == unassigned.height


# --------------------------------------------------------------------------- curation


def _rows_of(run, node_id: str, level: int) -> set[str]:
    return {
        c
        for c, p in zip(run.assignments["conversation_id"], run.assignments["path"], strict=True)
        if p[level] == node_id
    }


@pytest.mark.parametrize("depth", DEPTHS)
def test_merge_at_every_level_moves_rows_children_and_counts(
    fixed_runs: FixedRuns, depth: int, tmp_path
) -> None:
    for lv in range(depth):
        run_dir = copy(fixed_runs.run(depth), tmp_path / f"merge{lv}")
        run = load_run(run_dir)
        tax = run.taxonomy
        parent = next(n for n in [*tax.level(lv - 1), None] if len(tax.children(n.id if n else None)) >= 2)
        target, source = [
            k for k in tax.children(parent.id if parent else None) if not k.extra.get("is_outlier_node")
        ][:2]
        moved_rows = _rows_of(run, source.id, lv)
        kept_rows = _rows_of(run, target.id, lv)
        C.merge_nodes(run, source.id, target.id)
        cur = load_run(run_dir)
        assert source.id not in cur.taxonomy.by_id
        assert len(cur.taxonomy.level(lv)) == len(tax.level(lv)) - 1
        assert _rows_of(cur, target.id, lv) == moved_rows | kept_rows
        assert cur.taxonomy.by_id[target.id].size == len(moved_rows | kept_rows)
        for child in tax.children(source.id):
            assert cur.taxonomy.by_id[child.id].parent_id == target.id
        for p, leaf in zip(cur.assignments["path"], cur.assignments["leaf_id"], strict=True):
            assert list(p) == [n.id for n in cur.taxonomy.path(leaf)]
        for level in range(depth):
            assert sum(n.size for n in cur.taxonomy.level(level)) == cur.assignments.height


@pytest.mark.parametrize("depth", DEPTHS)
def test_move_and_rename_at_any_depth(fixed_runs: FixedRuns, depth: int, tmp_path) -> None:
    run_dir = copy(fixed_runs.run(depth), tmp_path / "r")
    run = load_run(run_dir)
    tax = run.taxonomy
    # move every leaf of one parent elsewhere: the emptied parent disappears
    noise = next(n for n in tax.leaves if n.extra.get("is_outlier_node"))
    parent = next(n for n in tax.level(depth - 2) if n.id != noise.parent_id)
    dest = next(n for n in tax.level(depth - 2) if n.id != parent.id)
    leaves = [k.id for k in tax.children(parent.id)]
    rows = _rows_of(run, parent.id, depth - 2)
    for leaf in leaves:
        C.move_leaf(load_run(run_dir), leaf, dest.id)
    for lv in range(depth):  # rename one node per level
        C.rename_node(load_run(run_dir), tax.level(lv)[-1].id, f"renamed at level {lv}")
    cur = load_run(run_dir)
    assert parent.id not in cur.taxonomy.by_id
    assert _rows_of(cur, dest.id, depth - 2) >= rows
    expected = tuple(n.id for n in cur.taxonomy.path(dest.id))
    moved = cur.assignments.filter(pl.col("conversation_id").is_in(sorted(rows)))
    assert {tuple(p[:-1]) for p in moved["path"].to_list()} == {expected}
    assert all(cur.taxonomy.children(n.id) for n in cur.taxonomy.nodes if n.level < depth - 1)
    frame, _ = export_frame(cur, "csv")
    stems = [c[: -len("_id")] for c in LEVEL_COLUMNS[depth][::2]]
    for lv, stem in enumerate(stems):
        node = tax.level(lv)[-1]
        if node.id in cur.taxonomy.by_id:
            names = frame.filter(pl.col(f"{stem}_id") == node.id)[f"{stem}_name"]
            assert set(names) == {f"renamed at level {lv}"}


# --------------------------------------------------------------------------- format 1


def test_format_1_runs_read_as_format_2(fixed_runs: FixedRuns, capsys) -> None:
    old, new = fixed_runs.run(3, format_version=1), fixed_runs.run(3)
    assert "mid_id" in pl.read_parquet(old / "assignments.parquet").columns
    r1, r2 = load_run(old), load_run(new)
    assert r1.manifest["format_version"] == 1
    assert r1.assignments.columns == r2.assignments.columns and r1.assignments.equals(r2.assignments)
    for fmt in ("csv", "bailbench"):
        assert export_frame(r1, fmt)[0].equals(export_frame(r2, fmt)[0])
    outputs = []
    for run_dir in (old, new):
        assert main(["show", str(run_dir)]) == 0
        outputs.append(capsys.readouterr().out.replace(str(run_dir), "RUN"))
        assert main(["eval", str(run_dir), "--truth", "category", "--json"]) == 0
        outputs.append(capsys.readouterr().out.replace(str(run_dir), "RUN"))
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    assert "3 levels: 3 top categories, 6 intermediate, 13 leaves" in outputs[0]


def test_a_path_that_disagrees_with_the_taxonomy_is_one_clear_error(
    fixed_runs: FixedRuns, tmp_path, capsys
) -> None:
    run_dir = copy(fixed_runs.run(3), tmp_path / "bad")
    table = pl.read_parquet(run_dir / "assignments.parquet")
    first = table["path"][0].to_list()
    bad = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(["T9", *first[1:]]))
        .otherwise(pl.col("path"))
        .alias("path")
    )
    bad.write_parquet(run_dir / "assignments.parquet")
    assert main(["show", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"leaf '{first[-1]}' has path" in err


class CutAtDepth:
    """A hierarchy stage for the real pipeline that always gives ``depth`` levels: one Ward tree
    over the leaf centroids cut at k^(l/(depth-1)) nodes for level l (a level as large as the
    one below it passes each node through)."""

    label = "ward cut at a fixed depth"

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def build(self, space, leaf_labels):
        import numpy as np
        from scipy.cluster.hierarchy import fcluster, linkage

        from bailclio.hierarchy import Hierarchy

        k = int(leaf_labels.max()) + 1
        centroids = np.stack([space[leaf_labels == i].mean(axis=0) for i in range(k)])
        tree = linkage(centroids, method="ward") if k > 1 else None
        groups = []
        for lv in range(self.depth - 1):
            size = max(1, round(k ** (lv / (self.depth - 1))))
            raw = fcluster(tree, size, criterion="maxclust") if tree is not None else np.ones(k, int)
            groups.append(np.unique(raw, return_inverse=True)[1])
        groups.append(np.arange(k))
        parents = []
        for lv in range(1, self.depth):
            pmap = np.zeros(int(groups[lv].max()) + 1, dtype=np.int64)
            pmap[groups[lv]] = groups[lv - 1]
            parents.append(pmap)
        return Hierarchy(parents, k, {"cut_at_depth": self.depth})


@pytest.fixture(scope="session")
def real_deep_run(bailbench_sample: Path, tmp_path_factory) -> Path:
    """The real pipeline (MiniLM, UMAP, HDBSCAN, keyphrase names) with its hierarchy stage
    asked for five levels."""
    from bailclio import Taxonomer

    tx = Taxonomer(hierarchy=CutAtDepth(5), progress=False).fit(pl.read_csv(bailbench_sample))
    out = tmp_path_factory.mktemp("real-deep") / "run"
    tx.save(out)
    return out


def test_a_real_five_level_run_works_in_every_reader(real_deep_run: Path, tmp_path, capsys) -> None:
    run = load_run(real_deep_run)
    assert run.depth == 5 and "mid_id" not in run.assignments.columns
    for lv in range(5):
        assert sum(n.size for n in run.taxonomy.level(lv)) == run.assignments.height
        assert all(n.name for n in run.taxonomy.level(lv))
    assert main(["show", str(real_deep_run)]) == 0
    assert "5 levels: " in capsys.readouterr().out
    out = tmp_path / "x.csv"
    assert main(["export", str(real_deep_run), "--format", "csv", "--out", str(out)]) == 0
    frame = pl.read_csv(out, schema_overrides={"conversation_id": pl.String})
    assert frame.columns[:11] == ["conversation_id", *LEVEL_COLUMNS[5]]
    capsys.readouterr()
    assert main(["eval", str(real_deep_run), "--truth", "category", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for mode in {r["outliers"] for r in rows}:  # eval scores outliers both as their own group and attached
        assert [r["level"] for r in rows if r["outliers"] == mode] == [0, 1, 2, 3, 4]
    assert {r["outliers"] for r in rows} == {"own", "attached"}
    assert main(["diff", str(real_deep_run), str(real_deep_run), "--level", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["only_in_a"] == [] == result["only_in_b"]
    assert (
        main(
            ["assign", str(real_deep_run), str(ROOT / "data" / "bailbench.csv"), "--out", str(out), "--quiet"]
        )
        == 0
    )
    placed = pl.read_csv(out).filter(pl.col("leaf_id").is_not_null())
    assert placed.height > 0 and {"level_3_id", "level_3_name"} <= set(placed.columns)
    ex = D.prepare(run)
    assert [c for c in ex.frame.columns if c.startswith("lvl") and not c.endswith("_name")] == [
        f"lvl{i}" for i in range(5)
    ]


def test_the_pipeline_writes_path_and_no_mid_id(small_run: Path) -> None:
    raw = pl.read_parquet(small_run / "assignments.parquet")
    assert "mid_id" not in raw.columns
    assert json.loads((small_run / "manifest.json").read_text())["format_version"] == 2
    run = load_run(small_run)
    for lv in range(run.depth):
        assert run.level_ids(lv) == [p[lv] for p in raw["path"].to_list()]
