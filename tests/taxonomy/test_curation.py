"""Curation edits: validated when appended, replayed on load, pipeline files left untouched."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bailclio.errors import UserError
from bailclio.rundir import load_run
from bailclio.taxonomy import curation as C

pytestmark = pytest.mark.timeout(120)


def sibling_leaves(run):
    tax = run.taxonomy
    parent = next(n for n in tax.nodes if len([c for c in tax.children(n.id) if c in tax.leaves]) >= 2)
    return tax.children(parent.id)[:2]


def test_rename_and_describe_are_logged_and_applied_on_load(run_dir: Path) -> None:
    before = {f: (run_dir / f).read_bytes() for f in ("taxonomy.json", "assignments.parquet")}
    run = load_run(run_dir)
    node = run.taxonomy.roots[0]
    C.rename_node(run, node.id, "  Weapons and harm ")
    C.describe_node(run, node.id, "Requests that could hurt people.")
    log = json.loads((run_dir / "curation.json").read_text())
    assert log["format_version"] == 1
    assert [e["op"] for e in log["edits"]] == ["rename", "describe"]
    assert all("at" in e for e in log["edits"])
    curated = load_run(run_dir)
    assert curated.taxonomy.by_id[node.id].name == "Weapons and harm"
    assert curated.taxonomy.by_id[node.id].description == "Requests that could hurt people."
    assert curated.manifest["curation"] == {"edits": 2}
    assert load_run(run_dir, curated=False).taxonomy.by_id[node.id].name == node.name
    assert {f: (run_dir / f).read_bytes() for f in before} == before


def test_merge_siblings_moves_conversations_and_recounts(run_dir: Path) -> None:
    run = load_run(run_dir)
    target, source = sibling_leaves(run)
    C.merge_nodes(run, source.id, target.id)
    cur = load_run(run_dir)
    assert source.id not in cur.taxonomy.by_id
    merged = cur.taxonomy.by_id[target.id]
    assert merged.size == target.size + source.size
    assert merged.extra["merged_from"] == [source.id]
    assert set(source.exemplar_ids) <= set(merged.exemplar_ids)
    assert (cur.assignments["leaf_id"] == target.id).sum() == merged.size
    paths = cur.assignments.filter(pl.col("leaf_id") == target.id)["path"].to_list()
    assert {tuple(p) for p in paths} == {tuple(n.id for n in cur.taxonomy.path(target.id))}
    total = cur.assignments.height
    for n in cur.taxonomy.nodes:
        kids = cur.taxonomy.children(n.id)
        if kids:
            assert n.size == sum(k.size for k in kids)
        assert n.extra.get("share") == pytest.approx(n.size / total, abs=1e-6)


def test_merging_siblings_below_the_top_moves_their_rows(run_dir: Path) -> None:
    run = load_run(run_dir)
    tax = run.taxonomy
    top = next(n for n in tax.roots if len(tax.children(n.id)) >= 2)
    a, b = tax.children(top.id)[:2]
    b_leaves = tax.leaf_ids_under(b.id)
    b_rows = run.assignments.filter(pl.col("leaf_id").is_in(b_leaves))["conversation_id"]
    C.merge_nodes(run, b.id, a.id)
    cur = load_run(run_dir)
    assert b.id not in cur.taxonomy.by_id
    assert {cur.taxonomy.by_id[c.id].parent_id for c in tax.children(b.id)} <= {a.id}  # b's children
    moved = cur.assignments.filter(pl.col("conversation_id").is_in(b_rows.to_list()))
    assert {p[a.level] for p in moved["path"].to_list()} == {a.id}
    assert cur.taxonomy.by_id[a.id].size == a.size + b.size


def test_move_leaf_repaths_rows_and_drops_emptied_parents(run_dir: Path) -> None:
    run = load_run(run_dir)
    tax = run.taxonomy
    lonely = next((lf for lf in tax.leaves if len(tax.children(lf.parent_id)) == 1), None)
    leaf = lonely or tax.leaves[0]
    new_parent = next(n for n in tax.level(leaf.level - 1) if n.id != leaf.parent_id)
    C.move_leaf(run, leaf.id, new_parent.id)
    cur = load_run(run_dir)
    rows = cur.assignments.filter(pl.col("leaf_id") == leaf.id)
    assert rows.height == leaf.size
    expected = [n.id for n in cur.taxonomy.path(new_parent.id)] + [leaf.id]
    assert {tuple(p) for p in rows["path"].to_list()} == {tuple(expected)}
    assert set(rows["top_id"]) == {expected[0]}
    if lonely is not None:
        assert leaf.parent_id not in cur.taxonomy.by_id  # the emptied parent is gone
    assert sum(n.size for n in cur.taxonomy.roots) == cur.assignments.height
    assert all(cur.taxonomy.children(n.id) for n in cur.taxonomy.nodes if n.level < tax.depth - 1)


@pytest.mark.parametrize(
    ("make_edit", "message"),
    [
        (lambda t: {"op": "rename", "node_id": "nope", "name": "x"}, "no node 'nope'"),
        (lambda t: {"op": "rename", "node_id": t.roots[0].id, "name": "  "}, "empty"),
        (lambda t: {"op": "merge", "source": t.roots[0].id, "target": t.roots[0].id}, "into itself"),
        (lambda t: {"op": "merge", "source": t.leaves[0].id, "target": t.roots[0].id}, "only siblings"),
        (lambda t: {"op": "move", "node_id": t.roots[0].id, "parent_id": t.roots[-1].id}, "only leaves"),
        (
            lambda t: {"op": "move", "node_id": t.leaves[0].id, "parent_id": t.leaves[0].parent_id},
            "already under",
        ),
        (lambda t: {"op": "split", "node_id": t.roots[0].id}, "unknown edit op"),
    ],
)
def test_invalid_edits_are_refused_and_not_saved(run_dir: Path, make_edit, message: str) -> None:
    run = load_run(run_dir)
    with pytest.raises(C.CurationError, match=message):
        C.append_edit(run, make_edit(run.taxonomy))
    assert not (run_dir / "curation.json").exists()


def test_edits_are_validated_against_earlier_edits(run_dir: Path) -> None:
    run = load_run(run_dir)
    target, source = sibling_leaves(run)
    C.merge_nodes(run, source.id, target.id)
    with pytest.raises(C.CurationError, match=f"no node '{source.id}'"):
        C.rename_node(run, source.id, "gone")  # ``run`` predates the merge; the log does not
    assert len(C.load_edits(run_dir)) == 1


def test_undo_drops_the_last_edit(run_dir: Path) -> None:
    run = load_run(run_dir)
    node = run.taxonomy.roots[0]
    assert C.undo_last(run_dir) is None
    C.rename_node(run, node.id, "First")
    C.rename_node(run, node.id, "Second")
    assert C.undo_last(run_dir)["name"] == "Second"
    assert load_run(run_dir).taxonomy.by_id[node.id].name == "First"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "curation.json: invalid JSON at line 1"),
        ('{"edits": 3}', "expected an object with an 'edits' list"),
        (
            '{"edits": [{"op": "rename", "node_id": "ZZ", "name": "x"}]}',
            "edit 0 (rename): rename: no node 'ZZ'",
        ),
    ],
)
def test_a_broken_log_is_one_clear_error(run_dir: Path, content: str, message: str) -> None:
    (run_dir / "curation.json").write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_run(run_dir)
    assert load_run(run_dir, curated=False).taxonomy.nodes


@pytest.mark.parametrize("depth", [3, 5])
def test_a_leaf_moved_under_a_node_two_levels_up_is_refused(fixed_runs, depth: int, tmp_path: Path) -> None:
    from support.explorer_runs import copy_run

    run_dir = copy_run(fixed_runs.run(depth), tmp_path / "runs" / "r1")
    run = load_run(run_dir)
    edit = {"op": "move", "node_id": run.taxonomy.leaves[0].id, "parent_id": run.taxonomy.roots[0].id}
    with pytest.raises(C.CurationError, match="one level up"):
        C.append_edit(run, edit)
    assert not (run_dir / "curation.json").exists()
