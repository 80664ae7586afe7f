"""Names without an LLM: distinctive keyphrases (class-based TF-IDF) plus representative texts.

For each level, the texts of every node are treated as one document and terms are scored with
class-based TF-IDF (as in BERTopic): ``tf(t, c) * log(1 + A / f(t))`` where ``A`` is the mean number
of words per class and ``f(t)`` the term's frequency over all classes. A node's name is its top
keyphrases (a unigram already inside a chosen bigram is skipped); siblings never share a name.
Exemplars are the members nearest the node's centroid.

Example::

    >>> texts = ["build a bomb", "bomb making guide", "write a poem", "poem about love"]
    >>> kws = ctfidf_keywords(texts, [0, 0, 1, 1], n_keywords=2)
    >>> kws[0][0], kws[1][0]
    ('bomb', 'poem')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bailclio.config import Config, NamingConfig
from bailclio.keyphrases import Embed, choose_phrases, name_candidates, phrase_name, rank_phrases

# phrases per node that go on to the embedding check
N_CANDIDATES = 10

# Words that frame almost any request to an assistant, and the role labels of rendered
# transcripts; they say nothing about why a model left.
_REQUEST_WORDS_TEXT = (
    "user assistant system earlier "
    "write create make generate give tell describe explain provide help want need like please "
    "use using know way ways best good new just really let step detailed list compose draft "
    "i'll you'll we'll i've you've we've i'm you're we're they're it's that's there's let's "
    "don't doesn't didn't isn't aren't won't can't couldn't wouldn't shouldn't i'd you'd"
)
REQUEST_WORDS = frozenset(_REQUEST_WORDS_TEXT.split())


def ctfidf_keywords(
    texts: list[str], groups: list[int] | np.ndarray, n_keywords: int = 8, ngram_max: int = 2
) -> dict[int, list[str]]:
    """Top ``n_keywords`` distinctive keyphrases per group id."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    groups = np.asarray(groups)
    ids = sorted(int(g) for g in np.unique(groups))
    docs = [" ".join(texts[i] for i in np.flatnonzero(groups == g)) for g in ids]
    vec = None
    for stop in ("english", None):  # a corpus of only stop words still gets names
        try:
            stop_words = list(ENGLISH_STOP_WORDS | REQUEST_WORDS) if stop else None
            vec = CountVectorizer(
                ngram_range=(1, ngram_max),
                stop_words=stop_words,
                token_pattern=r"(?u)\b[^\W\d_][\w'-]+\b",
                preprocessor=lambda text: text.lower().replace("\u2019", "'"),
            )
            counts = vec.fit_transform(docs)
            break
        except ValueError:
            vec = None
    if vec is None:
        return {g: [] for g in ids}
    counts = counts.astype(np.float64).tocsr()
    words_per_class = np.asarray(counts.sum(axis=1)).ravel()
    words_per_class[words_per_class == 0] = 1
    tf = counts.multiply(1.0 / words_per_class[:, None]).tocsr()
    freq = np.asarray(counts.sum(axis=0)).ravel()
    avg = counts.sum() / max(len(ids), 1)
    idf = np.log(1 + avg / np.maximum(freq, 1))
    scores = tf.multiply(idf).tocsr()
    vocab = np.array(vec.get_feature_names_out())
    out: dict[int, list[str]] = {}
    for row, g in enumerate(ids):
        data = scores.getrow(row).toarray().ravel()
        chosen: list[str] = []
        for j in np.argsort(-data, kind="stable"):
            if data[j] <= 0 or len(chosen) >= n_keywords:
                break
            term = str(vocab[j])
            if any(term in c.split() or c in term.split() for c in chosen if " " in c or " " in term):
                continue
            chosen.append(term)
        out[g] = chosen
    return out


def name_from_keywords(keywords: list[str], taken: set[str], n: int = 3) -> str:
    """A short name from the first ``n`` keyphrases, made unique among ``taken`` siblings."""
    base = "Miscellaneous" if not keywords else ", ".join(keywords[:n])
    name, extra = base, n
    while name.lower() in taken:
        if extra < len(keywords):
            name = f"{name}, {keywords[extra]}"
            extra += 1
        else:
            suffix = 2
            while f"{base} ({suffix})".lower() in taken:
                suffix += 1
            name = f"{base} ({suffix})"
    taken.add(name.lower())
    return name


def exemplars(space: np.ndarray, members: np.ndarray, n: int, prefer: np.ndarray | None = None) -> list[int]:
    """Indices of the ``n`` members nearest their centroid (``prefer`` members first, e.g. inliers)."""
    if len(members) == 0:
        return []
    pool = members
    if prefer is not None:
        preferred = members[prefer[members]]
        if len(preferred) >= min(n, len(members)):
            pool = preferred
    centroid = space[pool].mean(axis=0)
    dist = np.linalg.norm(space[pool] - centroid, axis=1)
    return [int(pool[i]) for i in np.argsort(dist, kind="stable")[:n]]


def describe(size: int, keywords: list[str], exemplar_texts: list[str]) -> str:
    kw = ", ".join(keywords[:6]) if keywords else "no distinctive terms"
    example = exemplar_texts[0].replace("\n", " ").strip() if exemplar_texts else ""
    if len(example) > 160:
        example = example[:157] + "..."
    desc = f"{size} conversation{'s' if size != 1 else ''} marked by: {kw}."
    if example:
        desc += f' Typical: "{example}"'
    return desc


__all__ = [
    "NamingConfig",
    "ctfidf_keywords",
    "describe",
    "exemplars",
    "name_from_keywords",
    "name_levels",
    "unique_name",
]


def name_levels(
    texts: list[str],
    space: np.ndarray,
    groups_per_level: list[np.ndarray],
    is_outlier: np.ndarray,
    cfg: Config,
    *,
    vectors: np.ndarray | None = None,
    embed: Embed | None = None,
) -> list[dict[int, dict[str, Any]]]:
    """Names, descriptions and exemplar indices for every node of every level.

    A name is a short phrase of the node's members (:mod:`bailclio.keyphrases`); with ``vectors``
    (the texts' embeddings) and ``embed`` (the model that made them) the phrases are checked
    against the members' embeddings and chosen for diversity, else taken in c-TF-IDF order.
    ``keywords`` are the node's phrases, best first; the description lists the phrases the name
    does not use and quotes a typical member.
    """
    out = []
    n = max(cfg.naming.n_keywords, 3)
    for groups in groups_per_level:
        groups = np.asarray(groups)
        candidates = rank_phrases(texts, groups, n=N_CANDIDATES)
        if embed is not None and vectors is not None and len(candidates) > 0:
            ordered, combos = choose_phrases(candidates, vectors, groups, embed, n)
        else:
            ordered = {g: c[:n] for g, c in candidates.items()}
            combos = {g: name_candidates(c) for g, c in ordered.items()}
        level: dict[int, dict[str, Any]] = {}
        taken: set[str] = set()
        for g in sorted(ordered):
            members = np.flatnonzero(groups == g)
            ex = exemplars(space, members, cfg.naming.n_exemplars, prefer=~is_outlier)
            name, used = unique_name(combos[g], taken)
            rest = [p for p in ordered[g] if p not in used]
            level[g] = {
                "name": name,
                "keywords": list(used) + rest,  # the name's phrases first
                "exemplars": ex,
                "describe": (lambda size, k=rest, e=ex: describe(size, k, [texts[i] for i in e])),
            }
        out.append(level)
    return out


def unique_name(combos: list[list[str]], taken: set[str]) -> tuple[str, list[str]]:
    """The first combination whose name no sibling has taken (else the first with a number)."""
    for combo in combos:
        name = phrase_name(combo)
        if name.lower() not in taken:
            taken.add(name.lower())
            return name, combo
    base = phrase_name(combos[0] if combos else [])
    suffix = 2
    while f"{base} ({suffix})".lower() in taken:
        suffix += 1
    taken.add(f"{base} ({suffix})".lower())
    return f"{base} ({suffix})", combos[0] if combos else []
