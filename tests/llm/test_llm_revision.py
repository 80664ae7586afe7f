"""Reconstruction and revision: every member is put back into the leaf whose name is nearest to it;
a leaf that loses members is asked once more, and the new text is kept only when it puts more of
them back and is grounded. And the grounding retry: sampled replies besides the greedy one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.llm_stage_model import block_items, prompt_kind
from support.prompts_model import MODEL, cfg_for, restating_model, write_prompts
from support.scripted_server import ScriptedServer

from bailclio.llm import make_backend
from bailclio.llmnaming.delimiters import block
from bailclio.llmnaming.fallback import evidence_tail
from bailclio.llmnaming.grounder import Grounder, Reconstruction, reconstruction_accuracy
from bailclio.llmnaming.grounding import Subject, ground
from bailclio.llmnaming.prompts import LEAF_TASK
from bailclio.llmnaming.replies import ClusterName
from bailclio.llmnaming.requests import naming_request
from bailclio.llmnaming.revision import revise
from bailclio.llmnaming.types import LeafEvidence, NodeName
from bailclio.pipeline import run

pytestmark = pytest.mark.timeout(300)


def test_placement_agrees_with_reconstruction_accuracy_as_texts_change() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, k = int(rng.integers(5, 50)), int(rng.integers(1, 7))
        rows, groups = rng.normal(size=(n, 4)), rng.integers(0, k, size=n)
        texts = {int(g): rng.normal(size=4) for g in np.unique(groups)}

        def score(rows: np.ndarray = rows, groups: np.ndarray = groups, texts: dict = texts) -> float:
            return reconstruction_accuracy(
                rows, groups, {g: str(g) for g in texts}, lambda t: np.stack([texts[int(x)] for x in t])
            )

        place = Reconstruction(rows, groups, dict(texts))
        assert place.hits == pytest.approx(score() * n)
        for _ in range(4):
            g = int(rng.choice(sorted(texts)))
            vec = rng.normal(size=4)
            expected = place.hits + place.gain(g, vec)
            place.set(g, vec)
            texts[g] = vec
            assert place.hits == expected == pytest.approx(score() * n)
            assert all(groups[i] == g for i in place.missed(g))
            assert all(groups[i] != g for i in place.taken(g))
            assert sum(len(place.missed(h)) for h in texts) == sum(len(place.taken(h)) for h in texts)


def _angle(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])


# Leaf 0 has members at 0 degrees and at 65 degrees; leaf 1 at 120. A text about "narrow" things
# sits at 0 degrees, so the members at 65 are nearer leaf 1's text; a "wide" text sits at 30.
VECTORS = np.stack([_angle(a) for a in (0, 0, 0, 65, 65, 120, 120, 120)])
GROUPS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
SUMMARIES = ["narrow a", "narrow b", "narrow c", "odd one", "odd two", "bee x", "bee y", "bee z"]


def toy_embed(texts: list[str]) -> np.ndarray:
    def one(t: str) -> np.ndarray:
        t = t.lower()
        return _angle(120 if "bee" in t else 30 if "wide" in t else 200 if "wrong" in t else 0)

    return np.stack([one(t) for t in texts])


def revision_case(
    srv: ScriptedServer,
    tmp_path: Path,
    second: NodeName | None = None,
    fallback_descriptions: dict[int, str] | None = None,
    *,
    first: NodeName | None = None,
    vectors: np.ndarray = VECTORS,
    embed: Any = toy_embed,
    naming: dict[str, Any] | None = None,
    **more: Any,
) -> tuple[dict[int, NodeName], dict[str, Any]]:
    cfg = cfg_for(srv, tmp_path / "c.sqlite")
    if naming:
        cfg = cfg.model_copy(update={"naming": cfg.naming.model_copy(update=naming)})
    backend = make_backend(cfg.llm, None, progress=False)
    assert backend is not None
    nodes = {
        0: first or NodeName("Name narrow things", "Users ask about narrow things.", "llm"),
        1: second or NodeName("Keep bees", "Users ask about bees.", "llm"),
    }
    reqs = {
        g: naming_request(
            LEAF_TASK.format(subject="Items."), [block("members", SUMMARIES, 100)], cfg, f"leaf {g}"
        )
        for g in nodes
    }
    grounder = Grounder(vectors, embed)
    stats = revise(
        backend, nodes, reqs, SUMMARIES, GROUPS, grounder, cfg, fallback_descriptions=fallback_descriptions,
        **more,
    )  # fmt: skip
    return nodes, stats


def repeats_itself(body: dict[str, Any]) -> str:
    """A model that, asked again, gives the answer it gave before."""
    for m in reversed(body["messages"]):
        if m["role"] == "assistant":
            return str(m["content"])
    raise AssertionError("a revision request continues the earlier reply")


WIDE = {0: LeafEvidence(["wide", "odd"], "odd one"), 1: LeafEvidence(["bee"], "bee x")}
KEYPHRASES = {0: "wide, odd", 1: "bee, hive"}
KEYPHRASE_TEXTS = {0: "5 conversations marked by: wide, odd.", 1: "3 conversations marked by: bee."}
AS_KEYPHRASES = {"fallback": KEYPHRASES, "fallback_descriptions": KEYPHRASE_TEXTS}


def test_a_leaf_whose_replies_do_not_help_ends_its_description_with_its_distinctive_terms(
    tmp_path: Path,
) -> None:
    with ScriptedServer(handler=repeats_itself, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path, evidence=WIDE, fallback=KEYPHRASES)
    assert nodes[0].source == "llm" and nodes[0].name == "Name narrow things"
    assert nodes[0].description.startswith("Users ask about narrow things. Marked by: wide, odd.")
    assert nodes[0].extra["revision"]["kept"] in ("keywords", "typical")
    assert stats["reconstruction_after"] == 1.0 > stats["reconstruction_before"]
    assert stats["revisions_to_keyphrases"] == 0  # the LLM texts already do as well as keyphrases
    assert stats["reconstruction_keyphrases"] == 1.0


def test_a_leaf_takes_its_keyphrase_text_only_while_the_llm_texts_place_fewer_members(tmp_path: Path) -> None:
    with ScriptedServer(handler=repeats_itself, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path, **AS_KEYPHRASES)
    assert stats["reconstruction_before"] < stats["reconstruction_keyphrases"] == 1.0
    assert nodes[0].source == "keyphrases" and nodes[0].name == "wide, odd"
    assert nodes[0].description == KEYPHRASE_TEXTS[0]
    assert str(nodes[0].error).startswith("reconstruction:")
    assert nodes[0].extra["revision"]["fallback"] == {"kind": "keyphrases", "gain": 2}
    assert nodes[1].source == "llm" and nodes[1].name == "Keep bees"  # not needed: left as it was
    assert stats["revisions_to_keyphrases"] == 1
    assert stats["reconstruction_after"] >= stats["reconstruction_keyphrases"]


def test_keyphrase_texts_are_not_taken_when_switched_off(tmp_path: Path) -> None:
    with ScriptedServer(handler=repeats_itself, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path, **AS_KEYPHRASES, naming={"revision_keyphrases": False})
    assert nodes[0].source == "llm"
    assert stats["reconstruction_after"] < stats["reconstruction_keyphrases"]


# Words at angles, a text the mean direction of the words it has: a description that keeps the
# LLM's "narrow" sentence cannot reach the members at 70 degrees; the evidence alone can.
WORDS = {"narrow": 0, "wide": 30, "bee": 120}
SPREAD = np.stack([_angle(a) for a in (0, 0, 0, 70, 70, 120, 120, 120)])


def word_embed(texts: list[str]) -> np.ndarray:
    def one(t: str) -> np.ndarray:
        v = sum((_angle(a) for w, a in WORDS.items() if w in t.lower()), np.zeros(2))
        return v / (np.linalg.norm(v) or 1.0)

    return np.stack([one(t) for t in texts])


def test_an_llm_name_keeps_with_the_leafs_evidence_before_a_keyphrase_name_is_taken(tmp_path: Path) -> None:
    first = NodeName("Name things", "Users ask about narrow things.", "llm")
    with ScriptedServer(handler=repeats_itself, model=MODEL) as srv:
        nodes, stats = revision_case(
            srv, tmp_path, first=first, vectors=SPREAD, embed=word_embed, evidence=WIDE, **AS_KEYPHRASES,
        )  # fmt: skip
    tried = {t["kind"]: t["gain"] for t in nodes[0].extra["revision"]["tried"]}
    assert tried["keywords"] <= 0 and tried["typical"] <= 0  # with the LLM's sentence: not enough
    assert nodes[0].source == "llm" and nodes[0].name == "Name things"
    assert nodes[0].description == evidence_tail(WIDE[0], True)
    assert nodes[0].extra["revision"]["fallback"] == {"kind": "evidence", "gain": 2}
    assert stats["revisions_to_keyphrases"] == 0
    assert stats["reconstruction_after"] == stats["reconstruction_keyphrases"] == 1.0


def test_a_revision_that_puts_missed_members_back_is_kept(tmp_path: Path) -> None:
    def handler(body: dict[str, Any]) -> str:
        if "<missed>" in body["messages"][-1]["content"]:  # the leaf that lost members
            assert set(block_items(body, "missed")) == {"odd one", "odd two"}
            return json.dumps({"name": "Name wide things", "description": "Users ask about wide things."})
        assert set(block_items(body, "intruders")) == {"odd one", "odd two"}  # the leaf that took them
        return json.dumps({"name": "Keep bees", "description": "Users ask about bees."})

    with ScriptedServer(handler=handler, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path)
        bodies = list(srv.requests)
    k = cfg_for(srv, tmp_path / "c.sqlite").naming.revision_samples
    assert len(bodies) == 2 * k  # per leaf asked: one greedy reply and sampled ones
    assert sum(b.get("temperature", 0) == 0 for b in bodies) == 2
    assert len({b.get("seed") for b in bodies}) == k
    assert nodes[0].name == "Name wide things" and nodes[0].source == "llm"
    assert nodes[0].extra["revision"]["kept"] == "rewritten" and nodes[0].extra["revision"]["missed"] == 2
    assert nodes[0].extra["grounded"] is True
    assert nodes[1].name == "Keep bees" and nodes[1].extra["revision"]["kept"] is None
    assert nodes[1].extra["revision"]["intruders"] == 2
    assert stats["revisions_asked"] == 2 and stats["revisions_kept"] == 1
    assert stats["reconstruction_after"] > stats["reconstruction_before"]
    assert stats["reconstruction_after"] == 1.0


@pytest.mark.parametrize("reply", ["wrong things", "narrow things"])
def test_a_revision_that_does_not_put_more_members_back_is_dropped(tmp_path: Path, reply: str) -> None:
    answer = json.dumps({"name": f"Name {reply}", "description": f"Users ask about {reply}."})
    same = json.dumps({"name": "Keep bees", "description": "Users ask about bees."})

    def handler(body: dict[str, Any]) -> str:  # the leaf that took members answers as before
        return answer if "<missed>" in body["messages"][-1]["content"] else same

    with ScriptedServer(handler=handler, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path)
    assert nodes[0].name == "Name narrow things"
    assert nodes[0].extra["revision"]["kept"] is None
    assert all(t["gain"] <= 0 for t in nodes[0].extra["revision"]["tried"])
    assert stats["revisions_kept"] == 0
    assert stats["reconstruction_after"] == stats["reconstruction_before"] < 1.0


def greedy_repeats_sampled_fixes(body: dict[str, Any]) -> str:
    """The poem leaf is named as cake recipes; a retry at temperature 0 repeats that, a sampled
    one names the poems."""
    first = {**body, "messages": body["messages"][:2]}
    if prompt_kind(first) != "leaf":
        return restating_model(body)
    members = " ".join(block_items(first, "members")).lower()
    theme = max(("poem", "python", "cake"), key=members.count)
    sampled = "does not fit its own" in body["messages"][-1]["content"] and body.get("temperature", 0) > 0
    if theme == "poem" and not sampled:
        return json.dumps(
            {"name": "Give step-by-step cake recipes", "description": "Users ask for cake recipes."}
        )
    names = {
        "poem": ("Write rhyming poems about nature", "Users ask for short rhyming poems about a scene."),
        "python": ("Fix KeyError bugs in Python parsers", "Users ask to fix a Python KeyError."),
        "cake": ("Give step-by-step cake recipes", "Users ask for cake recipes with a flavour."),
    }
    return json.dumps(dict(zip(("name", "description"), names[theme], strict=True)))


def test_a_sampled_grounding_retry_is_kept_when_the_greedy_one_repeats(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.csv")
    with ScriptedServer(handler=greedy_repeats_sampled_fixes, model=MODEL) as srv:
        cfg = cfg_for(srv, tmp_path / "c.sqlite")
        res = run(prompts, tmp_path / "run", cfg, progress=False)
        bodies = list(srv.requests)
    retries = [b for b in bodies if "does not fit its own" in b["messages"][-1]["content"]]
    k = cfg.naming.grounding_retry_samples
    assert k > 1 and retries and len(retries) % k == 0
    assert sum(b.get("temperature", 0) == 0 for b in retries) == len(retries) // k
    assert len({b.get("seed") for b in retries}) == k
    conv = dict(res.assignments.select("conversation_id", "leaf_id").iter_rows())
    poem_ids = {leaf for cid, leaf in conv.items() if cid.startswith("poem-")}
    poems = [n for n in res.taxonomy.level(res.taxonomy.depth - 1) if n.id in poem_ids]
    poems = [n for n in poems if not n.extra.get("is_outlier_node")]
    assert poems
    for node in poems:
        assert node.extra["name_source"] == "llm" and node.name.startswith("Write rhyming poems")
        assert node.extra["grounded_first"] is False and node.extra["grounded"] is True


def test_a_leaf_keeping_its_keyphrase_name_is_placed_by_the_description_it_will_show(tmp_path: Path) -> None:
    answer = json.dumps({"name": "Name narrow things", "description": "Users ask about narrow things."})
    keyphrase = NodeName("Keep", None, "keyphrases", "ungrounded")
    shown = {1: "12 conversations marked by: bee. Typical: bee x"}
    with ScriptedServer(handler=lambda body: answer, model=MODEL) as srv:
        _, stats = revision_case(srv, tmp_path, keyphrase, shown)
    first = "Name narrow things. Users ask about narrow things."
    final = reconstruction_accuracy(VECTORS, GROUPS, {0: first, 1: f"Keep. {shown[1]}"}, toy_embed)
    bare = reconstruction_accuracy(VECTORS, GROUPS, {0: first, 1: "Keep"}, toy_embed)
    assert final != bare
    assert stats["reconstruction_before"] == round(final, 4)


def test_a_name_about_the_prompts_tagged_lists_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tagged lists"):
        ClusterName(name="Cover every group", description="The groups listed inside <children> are all here.")
    assert ClusterName(name="Write poems", description="Users ask for poems about children.").name


def test_a_leaf_that_takes_other_members_is_asked_to_narrow_and_kept_when_it_gives_them_back(
    tmp_path: Path,
) -> None:
    narrow = json.dumps({"name": "Name narrow things", "description": "Users ask about narrow things."})
    away = json.dumps({"name": "Keep wrong hives", "description": "Users ask about wrong hives."})

    def handler(body: dict[str, Any]) -> str:
        return narrow if "<missed>" in body["messages"][-1]["content"] else away

    with ScriptedServer(handler=handler, model=MODEL) as srv:
        nodes, stats = revision_case(srv, tmp_path)
    assert nodes[0].name == "Name narrow things"
    assert nodes[1].name == "Keep wrong hives" and nodes[1].extra["revision"]["kept"] == "rewritten"
    assert nodes[1].extra["grounded"] is True
    assert stats["reconstruction_after"] == 1.0 > stats["reconstruction_before"]


def test_a_name_whose_contrast_sentence_fits_the_sibling_keeps_its_first_sentence(tmp_path: Path) -> None:
    text = {"name": "Name narrow things", "description": "Users ask about narrow things. Unlike the bees."}
    with ScriptedServer(handler=lambda body: json.dumps(text), model=MODEL) as srv:
        cfg = cfg_for(srv, tmp_path / "c.sqlite")
        backend = make_backend(cfg.llm, None, progress=False)
        assert backend is not None
        nodes = {
            0: NodeName(text["name"], text["description"], "llm"),
            1: NodeName("Keep bees", "Users ask about bees.", "llm"),
        }
        reqs = {
            g: naming_request(
                LEAF_TASK.format(subject="Items."), [block("members", SUMMARIES, 100)], cfg, f"leaf {g}"
            )
            for g in nodes
        }
        stats = ground(
            backend, nodes, reqs, GROUPS, Grounder(VECTORS, toy_embed), cfg, {0: "narrow", 1: "bee"},
            desc="names", subject=Subject("members", "nearby items"),
        )  # fmt: skip
        asked = len(srv.requests)
    assert asked == cfg.naming.grounding_retry_samples  # the full replies were asked for and failed
    assert stats["grounded_first"] == 1 and stats["grounded_after_retry"] == 1
    assert nodes[0].source == "llm" and nodes[0].description == "Users ask about narrow things."
    assert nodes[0].extra["grounding_first_sentence"] is True and nodes[0].extra["grounded"] is True
