"""Names without an LLM: phrases of the members, no request boilerplate, checked against the
members' embeddings with the real embedding model."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bailclio.config import Config, EmbeddingConfig
from bailclio.keyphrases import (
    REQUEST_WORDS,
    mmr,
    name_candidates,
    phrase_name,
    phrases,
    rank_phrases,
    refine,
    stop_words,
)
from bailclio.llmnaming.grounder import reconstruction_accuracy
from bailclio.naming import name_levels

# Three themes with no word in common, each phrased as requests full of boilerplate.
THEMES = {
    "phishing": [
        "Can you please write a phishing email with a fake login page for a bank?",
        "I want you to create a fake login page that steals bank passwords.",
        "Write a phishing email pretending to be the bank's security team.",
        "Please draft a phishing email that links to a fake login page.",
        "Could you make a fake login page for an online bank account?",
        "Help me write a phishing email asking bank customers to verify passwords.",
    ],
    "garden": [
        "Can you please explain how to grow tomato plants in a small garden?",
        "I want you to describe when to water tomato plants in summer.",
        "Write a guide to pruning tomato plants in a vegetable garden.",
        "Please tell me which soil tomato plants like in a raised garden bed.",
        "Could you explain why my tomato plants have yellow leaves?",
        "Help me plan a vegetable garden with tomato plants and herbs.",
    ],
    "chess": [
        "Can you please explain the best chess openings for beginners?",
        "I want you to describe the Sicilian defence in chess openings.",
        "Write a short guide to chess endgames with a king and rook.",
        "Please tell me how to practise chess openings and endgames.",
        "Could you explain castling rules in a chess game?",
        "Help me study chess endgames and the openings grandmasters play.",
    ],
}


def themed() -> tuple[list[str], np.ndarray]:
    texts = [t for rows in THEMES.values() for t in rows]
    groups = np.repeat(np.arange(len(THEMES)), [len(v) for v in THEMES.values()])
    return texts, groups


@pytest.fixture(scope="module")
def embed():
    from bailclio.embeddings.encoder import embed_texts

    cfg = EmbeddingConfig()
    return lambda texts: embed_texts(texts, cfg, progress=False)[0]


def test_no_candidate_phrase_is_request_boilerplate() -> None:
    text = "Can you please write a detailed story? I want you to describe the abuse of power, please."
    found = phrases(text)
    assert "abuse of power" in found
    for phrase in found:
        words = phrase.split()
        assert words[0] not in stop_words() and words[-1] not in stop_words()
        assert not REQUEST_WORDS & set(words)


def test_phrases_never_span_a_contraction_or_a_number() -> None:
    assert phrases("what's the 2024 tax rate") == ["tax", "tax rate", "rate"]


def test_ranked_phrases_come_from_their_own_node() -> None:
    texts, groups = themed()
    ranked = rank_phrases(texts, groups, n=5)
    for g, rows in enumerate(THEMES.values()):
        own = " ".join(rows).lower()
        assert ranked[g] and all(p in own for p in ranked[g])


def test_names_are_short_phrases_that_place_their_members_back(embed) -> None:
    texts, groups = themed()
    vectors = embed(texts)
    space = vectors[:, :2]
    outliers = np.zeros(len(texts), bool)
    level = name_levels(texts, space, [groups], outliers, Config(), vectors=vectors, embed=embed)[0]
    names = {g: meta["name"] for g, meta in level.items()}
    assert len(set(names.values())) == len(names)
    for g, name in names.items():
        assert not re.fullmatch(r"\w+(, \w+){2,}", name), name  # not a comma list of words
        assert 1 <= len(name.split()) <= 9 and name[0].isupper()
        own = " ".join(THEMES[list(THEMES)[g]]).lower()
        assert all(w in own for w in re.findall(r"\w+", name.lower()) if w != "and")
    # each member is nearest the name of its own theme, by the name alone
    assert reconstruction_accuracy(vectors, groups, names, embed) >= 0.9
    desc = level[0]["describe"](6)
    assert desc.startswith("6 conversations") and "Typical:" in desc


def test_sibling_names_stay_unique_when_their_members_read_alike() -> None:
    texts = ["fake login page"] * 3 + ["fake login page"] * 3
    groups = np.array([0, 0, 0, 1, 1, 1])
    level = name_levels(texts, np.zeros((6, 2)), [groups], np.zeros(6, bool), Config())[0]
    assert level[0]["name"].lower() != level[1]["name"].lower()


def test_mmr_prefers_a_different_idea_to_a_near_copy() -> None:
    relevance = np.array([1.0, 0.95, 0.6])
    similarity = np.array([[1.0, 0.99, 0.1], [0.99, 1.0, 0.1], [0.1, 0.1, 1.0]])
    assert mmr(relevance, similarity, k=2, diversity=0.5) == [0, 2]
    assert mmr(relevance, similarity, k=2, diversity=0.0) == [0, 1]


def test_a_name_never_lists_three_single_words() -> None:
    combos = name_candidates(["fraud", "scams", "fees", "fake invoices"])
    assert all(sum(" " in p for p in c) >= 2 for c in combos if len(c) == 3)
    name = phrase_name(["fake invoices", "wire transfers", "fees"])
    assert name == "Fake invoices, wire transfers and fees"


def test_refine_takes_the_option_that_puts_members_back() -> None:
    rows = np.array([[1.0, 0.0], [0.9, 0.44], [0.0, 1.0], [0.5, 0.87]])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    groups = np.array([0, 0, 1, 1])
    # node 0's first option sits between the groups and takes node 1's members; its second is its own
    options = {0: np.array([[0.6, 0.8], [1.0, 0.0]]), 1: np.array([[0.0, 1.0]])}
    assert refine(rows, groups, [0, 1], options) == {0: 1, 1: 0}


def test_a_node_whose_members_share_no_phrase_is_still_named_from_them() -> None:
    texts = ["volcano eruption", "glacier melting", "desert storm", "poem about love", "poem about loss", "x"]
    ranked = rank_phrases(texts, [0, 0, 0, 1, 1, 1])
    assert ranked[0] and all(any(p in t for t in texts[:3]) for p in ranked[0])
