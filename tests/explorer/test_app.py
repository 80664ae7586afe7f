"""The explorer page driven through Streamlit's AppTest on a small real run of chat transcripts."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from support.explorer_runs import SCRIPT_ID, SCRIPT_TEXT, copy_run, drop_rows, strip_stability

from bailclio.cli import main as cli_main
from bailclio.explorer import ROOTS_ENV
from bailclio.explorer import data as D
from bailclio.rundir import load_run

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _explorer_roots_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """open_app sets the page's allowed roots; they are put back after each test."""
    monkeypatch.setenv(ROOTS_ENV, "")  # recorded, so whatever open_app sets is undone afterwards


def open_app(root: Path) -> AppTest:
    os.environ[ROOTS_ENV] = str(root)  # what `bailclio explore ROOT` gives the page
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["runs_root"] = str(root)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def go(at: AppTest, view: str) -> AppTest:
    at.sidebar.radio(key="view").set_value(view).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def button(at: AppTest, prefix: str):
    return next(b for b in at.button if b.key and b.key.startswith(prefix))


def test_taxonomy_view_shows_tree_with_sizes_and_sunburst(run_dir: Path) -> None:
    at = open_app(run_dir)
    run = load_run(run_dir)
    tops = sorted(run.taxonomy.roots, key=lambda n: -n.size)
    labels = [e.label for e in at.expander]
    assert len([lbl for lbl in labels if "%" in lbl]) == len(tops)
    assert f"{tops[0].size:,} (" in labels[0]
    tree_keys = {b.key for b in at.button if b.key and b.key.startswith("tree_")}
    assert tree_keys == {f"tree_{n.id}" for n in run.taxonomy.nodes}
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "sunburst"
    assert sorted(spec["data"][0]["ids"]) == sorted(n.id for n in run.taxonomy.nodes)


def test_run_picker_lists_every_run_with_manifest_info(run_dir: Path) -> None:
    second = copy_run(run_dir, run_dir.parent / "r2")
    at = open_app(run_dir.parent)
    picker = at.sidebar.selectbox(key="run_path")
    assert sorted(picker.options) != [] and len(picker.options) == 2
    assert all("explorer-transcripts.jsonl" in o and "85 rows" in o for o in picker.options)
    picker.set_value(str(second)).run()
    assert not at.exception
    assert at.session_state["run_path"] == str(second)


def test_selecting_a_node_in_the_tree_opens_its_detail_and_members(run_dir: Path) -> None:
    at = open_app(run_dir)
    run = load_run(run_dir)
    leaf = max(run.taxonomy.leaves, key=lambda n: n.size)
    at.button(key=f"tree_{leaf.id}").click().run()
    assert at.session_state["node"] == leaf.id
    assert at.session_state["view"] == "Node"
    assert at.sidebar.selectbox(key="node").value == leaf.id
    assert [m.value for m in at.metric][0] == f"{leaf.size:,}"
    member_buttons = [b for b in at.button if b.key and b.key.startswith("member_open_")]
    assert len(member_buttons) == min(leaf.size, 20)
    assert leaf.description in texts(at)
    # share by model and by bail method
    frames = [df.value for df in at.dataframe]
    by_model = next(f for f in frames if "model" in f.columns)
    assert int(by_model["in_node"].sum()) == leaf.size
    assert any("bail_method" in f.columns for f in frames)


def test_member_list_is_paged(run_dir: Path) -> None:
    at = open_app(run_dir)
    run = load_run(run_dir)
    big = max(run.taxonomy.nodes, key=lambda n: n.size)
    assert big.size > 20
    at.sidebar.selectbox(key="node").set_value(big.id).run()
    go(at, "Node")
    first = {b.key for b in at.button if b.key.startswith("member_open_")}
    at.number_input(key="member_page").set_value(2).run()
    second = {b.key for b in at.button if b.key.startswith("member_open_")}
    assert first and second and not first & second
    assert len(first) == 20 and len(second) == min(big.size - 20, 20)


def test_conversation_view_marks_bail_turn_and_shows_journal_facets_metadata(run_dir: Path) -> None:
    at = open_app(run_dir)
    go(at, "Conversation")
    at.text_input(key="conv").input("conv-003").run()
    row = pl.read_parquet(run_dir / "conversations.parquet").filter(pl.col("conversation_id") == "conv-003")
    turns = row["conversation"][0].to_list()
    shown = texts(at)
    for turn in turns:
        assert turn["content"] in shown
    assert [w.value for w in at.warning] == ["Bail turn: the model left the conversation here."]
    assert row["journal"][0] in shown
    assert row["facet_request"][0] in shown
    details = next(d.value for d in at.dataframe if "field" in d.value.columns)
    meta = dict(zip(details["field"], details["value"], strict=True))
    assert meta["model"] == row["model"][0] and meta["bail_method"] == row["bail_method"][0]
    assert meta["category"] == row["category"][0]
    assert not {"x", "y"} & set(meta), "map coordinates are not conversation details"
    assert not at.json, "details are a readable table, not raw JSON"


def test_hostile_markup_is_shown_literally_never_as_html(run_dir: Path) -> None:
    at = open_app(run_dir)
    go(at, "Conversation")
    at.text_input(key="conv").input(SCRIPT_ID).run()
    assert SCRIPT_TEXT in texts(at)
    assert "<b>journal</b> with <script>markup</script>" in texts(at)
    for el in at.markdown:
        assert "<script" not in el.value and "<img" not in el.value
        assert not el.proto.allow_html
    # node names and snippets in the map's hover text are escaped too
    go(at, "Map")
    spec = at.get("plotly_chart")[0].proto.spec
    assert "<script" not in spec and "\\u003cscript" not in spec
    assert "&lt;script&gt;" in spec


def test_map_uses_webgl_mutes_outliers_and_colours_by_level(run_dir: Path) -> None:
    at = open_app(run_dir)
    go(at, "Map")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    run = load_run(run_dir)
    traces = spec["data"]
    assert {t["type"] for t in traces} == {"scattergl"}
    outl = [t for t in traces if t["name"] == "outliers"]
    assert len(outl) == 1 and outl[0]["marker"]["opacity"] < 0.5
    n_out = int(run.assignments["is_outlier"].sum())
    assert len(outl[0]["text"]) == n_out
    assert len(traces) - 1 == run.assignments.filter(~pl.col("is_outlier"))["top_id"].n_unique()
    at.selectbox(key="map_level").set_value(run.taxonomy.depth - 1).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    leaves_with_inliers = run.assignments.filter(~pl.col("is_outlier"))["leaf_id"].n_unique()
    assert len(spec["data"]) - 1 == leaves_with_inliers


def test_map_downsamples_large_runs(run_dir: Path) -> None:
    ex = D.prepare(load_run(run_dir))
    pts, n = D.map_points(ex, 0, max_points=30)
    assert n == ex.total and pts.height == 30
    again, _ = D.map_points(ex, 0, max_points=30)
    assert pts["_row"].to_list() == again["_row"].to_list()


def test_search_finds_conversations_and_nodes_and_jumps(run_dir: Path) -> None:
    at = open_app(run_dir)
    go(at, "Search")
    at.text_input(key="q").input("DEEPFAKE").run()
    conv = pl.read_parquet(run_dir / "conversations.parquet")
    in_text = pl.col("text").str.to_lowercase().str.contains("deepfake")
    in_labels = pl.col("category").str.to_lowercase().str.contains("deepfake")
    in_facet = pl.col("facet_request").str.to_lowercase().str.contains("deepfake")
    expected = conv.filter(in_text | in_labels | in_facet)["conversation_id"]
    header = next(s.value for s in at.subheader if s.value.startswith("Conversations"))
    assert header == f"Conversations ({len(expected):,})"
    opened = button(at, "search_open_")
    cid = opened.key.removeprefix("search_open_")
    assert cid in expected.to_list()
    opened.click().run()
    assert at.session_state["view"] == "Conversation" and at.session_state["conv"] == cid
    # a node name hit jumps to the node
    go(at, "Search")
    run = load_run(run_dir)
    leaf = run.taxonomy.leaves[0]
    at.text_input(key="q").input(leaf.name.split(",")[-1].strip()).run()
    at.button(key=f"search_node_{leaf.id}").click().run()
    assert at.session_state["node"] == leaf.id and at.session_state["view"] == "Node"


@pytest.mark.parametrize(
    ("widget", "value", "predicate"),
    [
        ("f_models", ["model-b"], pl.col("model") == "model-b"),
        ("f_methods", ["tool", "string"], pl.col("bail_method").is_in(["tool", "string"])),
        ("f_outliers", "only", pl.col("is_outlier")),
        ("f_outliers", "exclude", ~pl.col("is_outlier")),
    ],
)
def test_filters_restrict_search_results(run_dir: Path, widget: str, value, predicate) -> None:
    at = open_app(run_dir)
    go(at, "Search")
    w = at.sidebar.radio(key=widget) if widget == "f_outliers" else at.sidebar.multiselect(key=widget)
    w.set_value(value).run()
    ex = D.prepare(load_run(run_dir))
    n = ex.frame.filter(predicate).height
    assert 0 < n < ex.total
    assert f"Conversations ({n:,})" in [s.value for s in at.subheader]


def test_top_category_and_label_column_filters(run_dir: Path) -> None:
    at = open_app(run_dir)
    go(at, "Search")
    ex = D.prepare(load_run(run_dir))
    top = ex.taxonomy.roots[0].id
    at.sidebar.multiselect(key="f_tops").set_value([top]).run()
    at.sidebar.selectbox(key="f_label_col").set_value("category").run()
    at.sidebar.multiselect(key="f_label_category").set_value(["Jailbreak"]).run()
    n = ex.frame.filter((pl.col("lvl0") == top) & (pl.col("category") == "Jailbreak")).height
    assert f"Conversations ({n:,})" in [s.value for s in at.subheader]
    assert set(ex.label_columns) == {"category"}


def _with_stability_and_refusals(run_dir: Path) -> tuple[list[bool | None], str]:
    """Give the run a ``refused`` column (every third row refused, one row with no verdict) and
    every node a stability (the first node unstable); return the verdicts and that node's id."""
    conv = pl.read_parquet(run_dir / "conversations.parquet")
    refused = [None if i == 0 else i % 3 == 0 for i in range(conv.height)]
    conv.with_columns(pl.Series("refused", refused, dtype=pl.Boolean)).write_parquet(
        run_dir / "conversations.parquet"
    )
    tax = json.loads((run_dir / "taxonomy.json").read_text())
    for i, node in enumerate(tax["nodes"]):
        node["stability"] = 0.3 if i == 0 else 0.95
    (run_dir / "taxonomy.json").write_text(json.dumps(tax))
    return refused, tax["nodes"][0]["id"]


def test_node_page_shows_stability_and_no_refusal_share_with_interval(run_dir: Path) -> None:
    refused, shaky = _with_stability_and_refusals(run_dir)
    at = open_app(run_dir)
    at.sidebar.selectbox(key="node").set_value(shaky).run()
    go(at, "Node")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Stability"] == "0.30"
    assert any("Unstable" in w.value for w in at.warning)
    run = load_run(run_dir)
    node = run.taxonomy.by_id[shaky]
    level_ids = run.level_ids(node.level)
    verdicts = [r for r, nid in zip(refused, level_ids, strict=True) if nid == shaky and r is not None]
    assert metrics["No-refusal share"] == f"{verdicts.count(False) / len(verdicts):.1%}"
    assert any(f"{verdicts.count(False):,} of {len(verdicts):,}" in c.value for c in at.caption)
    assert (
        "unstable"
        in at.sidebar.selectbox(key="node").options[
            [o.endswith(f"[{shaky}]") for o in at.sidebar.selectbox(key="node").options].index(True)
        ]
    )


def test_refusal_filter_keeps_refused_or_not_refused_rows(run_dir: Path) -> None:
    refused, _ = _with_stability_and_refusals(run_dir)
    at = go(open_app(run_dir), "Search")
    at.sidebar.radio(key="f_refused").set_value("not refused").run()
    assert f"Conversations ({refused.count(False):,})" in [s.value for s in at.subheader]
    at.sidebar.radio(key="f_refused").set_value("refused").run()
    assert f"Conversations ({refused.count(True):,})" in [s.value for s in at.subheader]


def test_runs_without_stability_or_refusals_show_neither(run_dir: Path) -> None:
    strip_stability(run_dir)
    at = open_app(run_dir)
    at.sidebar.selectbox(key="node").set_value(load_run(run_dir).taxonomy.roots[0].id).run()
    go(at, "Node")
    assert not {"Stability", "No-refusal share"} & {m.label for m in at.metric}
    assert not [r for r in at.sidebar.radio if r.key == "f_refused"]


def frame_with(at: AppTest, column: str) -> list:
    """The dataframes on the page that have ``column``, in page order."""
    return [d.value for d in at.dataframe if column in d.value.columns]


def _compare_app(run_dir: Path, other: Path, level: int) -> AppTest:
    at = open_app(run_dir.parent)
    at.sidebar.selectbox(key="run_path").set_value(str(run_dir)).run()
    go(at, "Compare")
    at.selectbox(key="cmp_pick").set_value(str(other)).run()
    at.selectbox(key="cmp_level").set_value(level).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_compare_of_the_same_rows_reports_no_change_and_the_vanished_node(run_dir: Path) -> None:
    from bailclio.explorer.compare import NO_CHANGE
    from bailclio.taxonomy.curation import merge_nodes

    other = copy_run(run_dir, run_dir.parent / "r2")
    run = load_run(other)
    pair = next(p for p in run.taxonomy.nodes if len(run.taxonomy.children(p.id)) >= 2)
    kids = run.taxonomy.children(pair.id)
    merge_nodes(run, kids[1].id, kids[0].id)
    at = _compare_app(run_dir, other, kids[0].level)
    (nodes,) = frame_with(at, "change 95% interval")[:1]
    assert set(nodes["status"]) == {NO_CHANGE}  # the same rows on one taxonomy: nothing moved
    assert list(nodes["change (pp)"]) == [0.0] * len(nodes)
    only_a, only_b = frame_with(at, "best similarity")
    assert kids[1].id in list(only_a["id"]) and len(only_b) == 0
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["error_x"]["array"] is not None


def test_compare_calls_a_planted_loss_shrank_and_other_moves_noise(run_dir: Path) -> None:
    from bailclio.explorer.compare import NO_CHANGE
    from bailclio.taxonomy.diff import diff_runs

    other = copy_run(run_dir, run_dir.parent / "r2")
    run = load_run(run_dir)
    top = max(run.taxonomy.roots, key=lambda n: n.size)
    ids = run.assignments.filter(pl.col("top_id") == top.id)["conversation_id"].to_list()
    drop_rows(other, set(ids[: int(0.9 * len(ids))]))
    at = _compare_app(run_dir, other, 0)
    nodes = frame_with(at, "change 95% interval")[0]
    status = dict(zip(nodes["id"], nodes["status"], strict=True))
    assert status[top.id] == "shrank"
    truth = {n.id: n.significant for n in diff_runs(run, load_run(other), 0).nodes}
    for node_id, st in status.items():
        assert (st != NO_CHANGE) == truth[node_id], node_id
        if node_id != top.id and not truth[node_id]:
            assert st == NO_CHANGE


def test_compare_box_refuses_every_path_outside_the_roots_with_one_message(
    run_dir: Path, tmp_path: Path
) -> None:
    from bailclio.explorer.views_compare import REFUSED

    outside = copy_run(run_dir, tmp_path / "elsewhere" / "r9")
    (run_dir.parent / "notes").mkdir()
    at = open_app(run_dir.parent)
    go(at, "Compare")
    for typed in (str(outside), "/etc", str(tmp_path / "missing"), str(run_dir.parent / "notes"), "../../.."):
        at.text_input(key="cmp_path").input(typed).run()
        assert not at.exception
        assert [e.value for e in at.error] == [REFUSED], typed
        assert not [d for d in at.dataframe if "status" in d.value.columns]
    at.text_input(key="cmp_path").input(str(run_dir)).run()
    assert not at.error and [d for d in at.dataframe if "status" in d.value.columns]


def test_member_list_names_the_leaf_only_when_it_spans_several(run_dir: Path) -> None:
    at = open_app(run_dir)
    run = load_run(run_dir)
    top = next(t for t in run.taxonomy.roots if len(run.taxonomy.children(t.id)) >= 2)
    leaf = max(run.taxonomy.children(top.id), key=lambda n: n.size)
    at.sidebar.selectbox(key="node").set_value(leaf.id).run()
    go(at, "Node")
    assert [b for b in at.button if b.key.startswith("member_open_")]
    assert not [b for b in at.button if b.key.startswith("member_node_")]
    at.sidebar.selectbox(key="node").set_value(top.id).run()
    assert [b for b in at.button if b.key.startswith("member_node_")]


def test_node_finder_narrows_the_node_picker(run_dir: Path) -> None:
    at = open_app(run_dir)
    run = load_run(run_dir)
    leaf = max(run.taxonomy.leaves, key=lambda n: n.size)
    everything = at.sidebar.selectbox(key="node").options
    at.sidebar.text_input(key="node_find").input(leaf.id).run()
    narrowed = at.sidebar.selectbox(key="node").options
    assert len(narrowed) == 2 and leaf.id in narrowed[1]  # "(none)" and the node
    word = leaf.keywords[-1].lower()
    at.sidebar.text_input(key="node_find").input(word.upper()).run()
    hits = [o.rsplit("[", 1)[1].rstrip("]") for o in at.sidebar.selectbox(key="node").options[1:]]
    assert leaf.id in hits and len(hits) < len(everything)
    for node in (run.taxonomy.by_id[h] for h in hits):
        assert word in " ".join([node.name, node.description, *node.keywords]).lower()


def test_map_legend_sits_below_the_plot_clear_of_the_toolbar(run_dir: Path) -> None:
    at = go(open_app(run_dir), "Map")
    legend = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["legend"]
    assert legend["orientation"] == "h" and legend["y"] < 0


def test_groups_view_shows_each_nodes_share_per_group_with_intervals(run_dir: Path) -> None:
    from bailclio.taxonomy.compare import compare_groups

    at = go(open_app(run_dir), "Groups")
    assert at.selectbox(key="grp_by").options[:2] == ["model", "bail_method"]
    at.selectbox(key="grp_by").set_value("category").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "significant" in d.value.columns)
    run = load_run(run_dir)
    result = compare_groups(run, "category", 0)
    assert list(table["id"]) == [n.id for n in result.nodes]
    for g in result.groups:
        assert list(table[f"{g}: rows"]) == [n.groups[g].n for n in result.nodes]
        assert sum(table[f"{g}: rows"]) == result.group_sizes[g]
    assert list(table["significant"]).count("yes") == len(result.significant)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == len(result.groups)
    for trace in spec["data"]:
        assert trace["error_x"]["array"] and trace["error_x"]["arrayminus"]
    leaf_level = run.taxonomy.depth - 1
    at.selectbox(key="grp_level").set_value(leaf_level).run()
    table = next(d.value for d in at.dataframe if "significant" in d.value.columns)
    leaves = compare_groups(run, "category", leaf_level)
    marks = list(table["significant"])
    assert marks.count("yes") == len(leaves.significant)
    assert marks.count("not tested") == sum(not n.tested for n in leaves.nodes)


def _curate_app(run_dir: Path, node_id: str) -> AppTest:
    at = open_app(run_dir)
    at.sidebar.selectbox(key="node").set_value(node_id).run()
    return go(at, "Curate")


def _submit(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_curate_rename_and_describe_persist_and_apply_on_load(run_dir: Path) -> None:
    leaf = load_run(run_dir).taxonomy.leaves[0]
    raw_taxonomy = (run_dir / "taxonomy.json").read_bytes()
    at = _curate_app(run_dir, leaf.id)
    at.text_input(key=f"cur_name_{leaf.id}").input("Hand-named <b>leaf</b>")
    _submit(at, "Rename")
    at.text_area(key=f"cur_desc_{leaf.id}").input("A curated description.")
    _submit(at, "Save description")
    edits = json.loads((run_dir / "curation.json").read_text())["edits"]
    assert [(e["op"], e["node_id"]) for e in edits] == [("rename", leaf.id), ("describe", leaf.id)]
    assert (run_dir / "taxonomy.json").read_bytes() == raw_taxonomy
    node = load_run(run_dir).taxonomy.by_id[leaf.id]
    assert (node.name, node.description) == ("Hand-named <b>leaf</b>", "A curated description.")
    fresh = open_app(run_dir)
    assert any("Hand\\-named \\<b\\>leaf\\</b\\>" in b.label for b in fresh.button)
    assert [s.value for s in at.success][-1].startswith("Saved: describe")


def test_curate_merge_and_move_update_tree_and_assignments(run_dir: Path) -> None:
    run = load_run(run_dir)
    tax = run.taxonomy
    leaf_level = tax.depth - 1
    parent = next(
        p for p in tax.nodes if len(tax.children(p.id)) >= 2 and tax.children(p.id)[0].level == leaf_level
    )
    target, source = tax.children(parent.id)[:2]
    at = _curate_app(run_dir, target.id)
    at.selectbox(key=f"cur_merge_{target.id}").set_value(source.id)
    _submit(at, "Merge")
    merged = load_run(run_dir)
    assert source.id not in merged.taxonomy.by_id
    assert merged.taxonomy.by_id[target.id].size == target.size + source.size
    assert (merged.assignments["leaf_id"] == source.id).sum() == 0
    assert at.session_state["node"] == target.id
    # move the merged leaf under another node of its parent's level
    new_parent = next(n for n in merged.taxonomy.level(leaf_level - 1) if n.id != parent.id)
    at.selectbox(key=f"cur_parent_{target.id}").set_value(new_parent.id)
    _submit(at, "Move")
    moved = load_run(run_dir)
    rows = moved.assignments.filter(pl.col("leaf_id") == target.id)
    assert rows.height == target.size + source.size
    expected = (*[n.id for n in moved.taxonomy.path(new_parent.id)], target.id)
    assert {tuple(p) for p in rows["path"].to_list()} == {expected}
    assert set(rows["top_id"]) == {expected[0]}
    assert sum(n.size for n in moved.taxonomy.roots) == moved.assignments.height
    # undo brings the move back
    _submit(at, "Undo last edit")
    undone = load_run(run_dir)
    assert undone.taxonomy.by_id[target.id].parent_id == parent.id


def test_curate_merge_of_non_siblings_is_refused_with_a_message(run_dir: Path) -> None:
    from bailclio.taxonomy.curation import CurationError, merge_nodes

    run = load_run(run_dir)
    a, b = next(
        (x, y) for x in run.taxonomy.leaves for y in run.taxonomy.leaves if x.parent_id != y.parent_id
    )
    with pytest.raises(CurationError, match="only siblings"):
        merge_nodes(run, a.id, b.id)
    assert not (run_dir / "curation.json").exists()


def test_label_downloads_are_the_files_export_writes(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"labels.{fmt}"
        assert cli_main(["export", str(run_dir), "--format", fmt, "--out", str(out)]) == 0
        if fmt == "csv":
            assert D.labels_csv(run) == out.read_bytes()
        else:
            assert D.labels_frame(run).equals(pl.read_parquet(out))
            assert pl.read_parquet(io.BytesIO(D.labels_parquet(run))).equals(pl.read_parquet(out))


def test_downloads_offer_taxonomy_and_labels_with_curation(run_dir: Path) -> None:
    from bailclio.taxonomy.curation import rename_node

    leaf = load_run(run_dir).taxonomy.leaves[0]
    rename_node(load_run(run_dir), leaf.id, "Renamed leaf")
    at = go(open_app(run_dir), "Downloads")
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["Taxonomy (JSON) (curated)", "Labels (CSV) (curated)", "Labels (Parquet) (curated)"]
    run = load_run(run_dir)
    tax = json.loads(D.taxonomy_json(run))
    assert next(n for n in tax["nodes"] if n["id"] == leaf.id)["name"] == "Renamed leaf"

    csv = pl.read_csv(io.BytesIO(D.labels_csv(run)))
    assert csv.height == run.assignments.height
    depth = run.taxonomy.depth
    between = [f"level_{d}_{k}" for d in range(1, depth - 1) for k in ("id", "name")]
    assert csv.columns[: 2 * depth + 2] == [
        "conversation_id",
        "top_id",
        "top_name",
        *between,
        "leaf_id",
        "leaf_name",
        "is_outlier",
    ]
    assert {"model", "bail_method", "journal", "category", "conversation"} <= set(csv.columns)
    assert set(csv.filter(pl.col("leaf_id") == leaf.id)["leaf_name"]) == {"Renamed leaf"}
    pq = pl.read_parquet(io.BytesIO(D.labels_parquet(run)))
    assert pq.height == csv.height and pq["conversation"].dtype != pl.String


def test_broken_or_missing_run_shows_an_error_not_a_traceback(run_dir: Path, tmp_path: Path) -> None:
    at = open_app(tmp_path / "nowhere")
    assert "no such run directory" in at.error[0].value
    (run_dir / "manifest.json").write_text("{not json")
    at = open_app(run_dir)
    assert "invalid JSON" in at.error[0].value and "manifest.json" in at.error[0].value
    (run_dir / "manifest.json").unlink()
    at = open_app(run_dir.parent)
    assert "no bailclio run directories" in at.error[0].value


def test_bad_curation_log_shows_an_error(run_dir: Path) -> None:
    (run_dir / "curation.json").write_text(
        json.dumps({"edits": [{"op": "merge", "source": "L0", "target": "T0"}]})
    )
    at = open_app(run_dir)
    assert "curation.json: edit 0 (merge)" in at.error[0].value


def test_explore_command_serves_a_viewer_toolbar_without_deploy() -> None:
    from bailclio.commands.explore import command

    cmd = command(["runs"], 8501, "127.0.0.1")
    assert cmd[cmd.index("--client.toolbarMode") + 1] == "viewer"


def test_explore_command_serves_the_app_on_localhost(run_dir: Path) -> None:
    assert cli_main(["explore", str(run_dir / "missing")]) == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bailclio.cli", "explore", str(run_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.3)
        assert body == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    with socket.socket() as s:  # the server went away with the command
        assert s.connect_ex(("127.0.0.1", port)) != 0
