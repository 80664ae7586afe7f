"""Clio's LLM-built hierarchy (``naming.hierarchy = "llm"``): the model proposes parents from the
children's names, equal proposals are merged, every child is assigned to exactly one parent, and
a failed or invalid assignment keeps the structural parent. Against the scripted OpenAI-compatible
server on 127.0.0.1, at any depth."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.llm_stage_model import analyst, make_rows, prompt_kind, write_rows
from support.scripted_server import ScriptedServer

from bailclio.config import Config, load_config
from bailclio.llm import make_backend
from bailclio.llmnaming.hierarchy import build_and_name
from bailclio.llmnaming.namer import LeafInputs
from bailclio.naming import name_levels
from bailclio.pipeline import run

pytestmark = pytest.mark.timeout(300)

FAMILY = {
    "apple": "fruit",
    "banana": "fruit",
    "cherry": "fruit",
    "grape": "fruit",
    "car": "vehicles",
    "truck": "vehicles",
    "bus": "vehicles",
    "train": "vehicles",
}
# Leaves in an order that mixes the families in the structural groups below.
LEAVES = ["apple", "banana", "car", "cherry", "grape", "truck", "bus", "train"]
SIZES = [3, 3, 3, 3, 3, 3, 4, 4]  # more members for bus and train: no tie in a majority vote
# Structural level above the leaves: {apple, banana, car} -> fruit by majority, {cherry, grape,
# truck} -> fruit again (a duplicate proposal), {bus, train} -> vehicles.
MID_OF_LEAF = np.array([0, 0, 0, 1, 1, 1, 2, 2])
TREES = {
    2: [MID_OF_LEAF],
    3: [np.array([0, 0, 1]), MID_OF_LEAF],
    4: [np.array([0, 0]), np.array([0, 1, 1]), MID_OF_LEAF],
}


def family_of(text: str) -> str | None:
    words = set(re.findall(r"[a-z]+", text.lower()))
    hits = [f for w, f in FAMILY.items() if w in words] + [f for f in ("fruit", "vehicles") if f in words]
    return max(set(hits), key=hits.count) if hits else None


def numbered(body: dict[str, Any], tag: str) -> list[str]:
    user = body["messages"][1]["content"]
    m = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", user, re.DOTALL)
    return [re.sub(r"^\d+\. ", "", line) for line in m.group(1).splitlines()] if m else []


def sorter(body: dict[str, Any]) -> str | None:
    """The scripted model's answers to leaf, parent and assignment prompts of these inputs."""
    user = body["messages"][1]["content"]
    if "<members>" in user:
        words = re.findall(r"<members>\n- \w+ about (\w+)", user)
        theme = words[0] if words else "things"
        return json.dumps(
            {"name": f"Discuss {theme}", "description": f"Members ask about {theme}. Only {theme}."}
        )
    if "<children>" in user:
        fams = [family_of(line) for line in re.findall(r"^- (.*)$", user.split("<nearby>")[0], re.M)]
        fam = max(sorted(set(fams), key=str), key=fams.count)
        return json.dumps({"name": f"Cover {fam}", "description": f"Everything about {fam}. Nothing else."})
    if "<groups>" in user:
        cats = [family_of(c.split(":")[0]) for c in numbered(body, "categories")]
        out = []
        for k, g in enumerate(numbered(body, "groups"), 1):
            fam = family_of(g.split(":")[0])
            out.append({"group": k, "category": cats.index(fam) + 1 if fam in cats else 1})
        return json.dumps({"assignments": out})
    return None


def cfg_for(srv: ScriptedServer, cache: Path, **over: Any) -> Config:
    settings = {
        "llm.backend": "openai",
        "llm.base_url": srv.base_url,
        "llm.model": "scripted-model",
        "llm.cache_path": str(cache),
        "llm.max_retries": 0,
        "naming.hierarchy": "llm",
        **over,
    }
    return load_config(None, settings)


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    texts, labels = [], []
    for leaf, (theme, n) in enumerate(zip(LEAVES, SIZES, strict=True)):
        for j in range(n):
            texts.append(f"question about {theme} number {j}: tell me facts about {theme}")
            labels.append(leaf)
    rng = np.random.default_rng(0)
    labels_a = np.array(labels)
    space = rng.normal(size=(len(texts), 4)) * 0.1 + labels_a[:, None]
    return {"texts": texts, "labels": labels_a, "space": space}


@pytest.fixture()
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(handler=sorter, model="scripted-model") as srv:
        yield srv


def build(server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path, depth: int, **over: Any) -> Any:
    cfg = cfg_for(server, tmp_path / "c.sqlite", **over)
    backend = make_backend(cfg.llm, None, progress=False)
    texts, space = inputs["texts"], inputs["space"]
    outlier = np.zeros(len(texts), dtype=bool)
    try:
        leaves = LeafInputs(
            summaries=texts,
            space=space,
            leaf_of_unique=inputs["labels"],
            fallback={
                g: m["name"]
                for g, m in name_levels(texts, space, [inputs["labels"]], outlier, cfg)[0].items()
            },
            fixed_leaves={},
        )
        return build_and_name(
            backend,
            leaves,
            TREES[depth],
            lambda groups: name_levels(texts, space, [groups], outlier, cfg)[0],
            cfg,
        )
    finally:
        backend.close()


def check_tree(result: Any, depth: int) -> None:
    """Every node of every level has exactly one parent, the levels are numbered 0.. without gaps,
    and each level's names are the nodes of that numbering."""
    assert len(result.parents) == depth - 1 and len(result.levels) == depth
    for d, p in enumerate(result.parents):
        assert len(p) == len(result.levels[d + 1])
        assert sorted(set(p.tolist())) == list(range(len(result.levels[d])))


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_children_go_to_the_parent_the_model_assigns_at_any_depth(
    server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path, depth: int
) -> None:
    res = build(server, inputs, tmp_path, depth)
    check_tree(res, depth)
    leaves, above = res.levels[-1], res.parents[-1]
    # the structural groups mix the families; the model's assignment separates them
    for fam in ("fruit", "vehicles"):
        parents = {int(above[i]) for i, t in enumerate(LEAVES) if FAMILY[t] == fam}
        assert len(parents) == 1
        (p,) = parents
        assert res.levels[-2][p].name == f"Cover {fam}" and res.levels[-2][p].source == "llm"
    assert above[LEAVES.index("apple")] != above[LEAVES.index("car")]
    assert all(n.extra["parent_source"] == "llm" for n in leaves.values())
    lvl = "top" if depth == 2 else ("intermediate" if depth == 3 else "level2")
    assert res.stats[lvl]["merged_proposals"] == 1  # the second "Cover fruit" merged into the first
    assert res.stats[lvl]["children_moved"] == 2  # car to vehicles, truck to vehicles
    assert res.stats[lvl]["assign_failed_batches"] == 0
    assigns = [b for b in server.requests if "<groups>" in b["messages"][1]["content"]]
    first = assigns[0]["messages"][1]["content"]
    assert all(f"Discuss {t}" in first for t in LEAVES)  # every child offered, once
    assert first.count("Cover fruit") == 1  # the duplicate proposal is offered once


def test_an_assignment_that_lumps_most_rows_under_one_top_category_keeps_the_structural_parents(
    server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path
) -> None:
    def lumper(body: dict[str, Any]) -> str | None:
        if "<groups>" not in body["messages"][1]["content"]:
            return sorter(body)
        cats = numbered(body, "categories")
        k = next((i for i, c in enumerate(cats, 1) if c.startswith("Cover vehicles")), 1)
        return json.dumps({"assignments": [{"group": g, "category": k} for g in range(1, 9)]})

    server.handler = lumper
    res = build(server, inputs, tmp_path, 2)
    check_tree(res, 2)
    leaves, top = res.levels[-1], res.parents[-1]
    # everything sent to "vehicles" would be every row; the fruit-side children go back
    assert top[LEAVES.index("apple")] != top[LEAVES.index("bus")]
    for t in ("apple", "banana", "cherry", "grape", "car", "truck"):
        extra = leaves[LEAVES.index(t)].extra
        assert extra["parent_source"] == "structural" and "top_max_share" in extra["parent_error"]
    assert leaves[LEAVES.index("bus")].extra["parent_source"] == "llm"
    rows = np.bincount(top[inputs["labels"]])
    structural_top = np.bincount(np.array([0, 0, 0, 0, 0, 0, 1, 1])[inputs["labels"]])
    assert rows.max() <= structural_top.max()  # no larger than the structural tree's (merged) top


@pytest.mark.parametrize(
    "bad",
    [
        json.dumps({"assignments": [{"group": 1, "category": 1}]}),  # children left out
        json.dumps({"assignments": [{"group": k, "category": 1} for k in [1, 1, 2, 3, 4, 5, 6, 7, 8]]}),
        json.dumps({"assignments": [{"group": k, "category": 9} for k in range(1, 9)]}),  # no such category
        '{"assignments": [',
    ],
    ids=["missing", "repeated", "unknown-category", "truncated"],
)
def test_an_invalid_assignment_keeps_the_structural_parent(
    server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path, bad: str
) -> None:
    def handler(body: dict[str, Any]) -> str | None:
        return bad if "<groups>" in body["messages"][1]["content"] else sorter(body)

    server.handler = handler
    res = build(server, inputs, tmp_path, 3)
    check_tree(res, 3)
    st = res.stats["intermediate"]
    assert st["assign_failed_batches"] == 1 and st["children_assigned_by_llm"] == 0
    assert st["assign_requests"] == 1 and len(st["assign_errors"]) == 1
    tries = [b for b in server.requests if "<groups>\n1. Discuss" in b["messages"][1]["content"]]
    assert len(tries) == cfg_for(server, tmp_path / "x").llm.max_attempts
    above = res.parents[-1]
    # structural groups 0 and 1 proposed the same name and were merged; group 2 stays apart
    for g in (0, 1, 2):
        assert len({int(above[i]) for i in np.flatnonzero(np.equal(MID_OF_LEAF, g))}) == 1
    assert above[0] == above[3] and above[0] != above[6]
    for n in res.levels[-1].values():
        assert n.extra["parent_source"] == "structural"
        assert n.extra["parent_error"].startswith("assignment failed, structural parent kept")


def test_a_failed_proposal_keeps_its_group_as_a_category(
    server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path
) -> None:
    def handler(body: dict[str, Any]) -> Any:
        user = body["messages"][1]["content"]
        if "<children>" in user and "Discuss bus" in user.split("<nearby>")[0]:
            return "not json at all"
        return sorter(body)

    server.handler = handler
    res = build(server, inputs, tmp_path, 2)
    check_tree(res, 2)
    top = res.levels[0]
    # the vehicles group had no proposal: it is offered under its keyphrase name, and the
    # vehicle leaves the model cannot place by family stay together under it
    assert res.stats["top"]["proposals"] == 2
    assert any(n.source == "keyphrases" for n in top.values())
    fruit = {int(res.parents[0][i]) for i, t in enumerate(LEAVES) if FAMILY[t] == "fruit"}
    assert len(fruit) == 1 and top[fruit.pop()].name == "Cover fruit"


def test_rerun_makes_no_calls(server: ScriptedServer, inputs: dict[str, Any], tmp_path: Path) -> None:
    first = build(server, inputs, tmp_path, 3)
    n = len(server.requests)
    again = build(server, inputs, tmp_path, 3)
    assert len(server.requests) == n
    assert [p.tolist() for p in again.parents] == [p.tolist() for p in first.parents]


# ------------------------------------------------------------------------- through bailclio run


def family_analyst(body: dict[str, Any]) -> Any:
    """The honest analyst of llm_stage_model, also sorting groups into the category sharing most
    of their words (the first on a tie)."""
    if prompt_kind(body) == "other" and "<groups>" in body["messages"][1]["content"]:
        cats = [set(re.findall(r"\w+", c.lower())) for c in numbered(body, "categories")]
        out = []
        for k, g in enumerate(numbered(body, "groups"), 1):
            words = set(re.findall(r"\w+", g.lower()))
            best = max(range(len(cats)), key=lambda i: (len(words & cats[i]), -i))
            out.append({"group": k, "category": best + 1})
        return json.dumps({"assignments": out})
    return analyst(body)


@pytest.fixture(scope="module")
def bail_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.jsonl", make_rows(injection=False))


def test_run_with_the_llm_hierarchy_writes_a_consistent_tree(bail_rows: Path, tmp_path: Path) -> None:
    with ScriptedServer(handler=family_analyst, model="scripted-model") as srv:
        cfg = cfg_for(srv, tmp_path / "c.sqlite", **{"cluster.min_cluster_size": 4})
        res = run(bail_rows, tmp_path / "run", cfg, progress=False)
        calls = len(srv.requests)
        again = run(bail_rows, tmp_path / "again", cfg, progress=False)
        assert len(srv.requests) == calls  # a rerun is served from the cache
    tax = res.taxonomy
    assert "rebuilt by the LLM" in tax.meta["hierarchy"]
    by_id = {n.id: n for n in tax.nodes}
    depth = tax.depth
    for n in tax.nodes:
        if n.level == 0:
            assert n.parent_id is None
            continue
        parent = by_id[n.parent_id]
        assert parent.level == n.level - 1
        assert n.extra["parent_source"] in ("llm", "structural")
        if n.extra["parent_source"] == "structural":  # only when not sent, or the reply failed
            assert (
                n.extra.get("is_outlier_node")
                or "parent_error" in n.extra
                or len(tax.level(n.level - 1)) == 1
            )
    for n in tax.nodes:  # every name above the leaves was checked like the leaves' names
        if n.level < depth - 1 and n.extra.get("name_source") == "llm":
            assert "grounding_margin" in n.extra
    # each row's path follows the parent links, and node sizes add up
    for path in res.assignments["path"].to_list():
        for up, down in zip(path, path[1:], strict=False):
            assert by_id[down].parent_id == up
    for n in tax.nodes:
        kids = [k for k in tax.nodes if k.parent_id == n.id]
        if kids:
            assert sum(k.size for k in kids) == n.size
    resolved = res.manifest["resolved"]["hierarchy"]
    assert resolved["built_by"] == "llm" and resolved["sizes"] == [len(tax.level(d)) for d in range(depth)]
    assert len(resolved["structural_sizes"]) == depth
    st = res.manifest["llm"]["stages"]
    above = [k for k in st if k.startswith("names_") and k != "names_leaf"]
    assert above and all("assign_requests" in st[k] for k in above)
    # the model's assignments were used wherever a level had a choice to make
    assert sum(st[k]["children_assigned_by_llm"] for k in above) == sum(
        1 for n in tax.nodes if n.level > 0 and n.extra["parent_source"] == "llm"
    )
    assert any(n.extra["parent_source"] == "llm" for n in tax.nodes if n.level > 0)
    assert [n.name for n in again.taxonomy.nodes] == [n.name for n in tax.nodes]
