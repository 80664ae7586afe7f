"""Readable node names without an LLM: candidate phrases, scored against the other nodes, chosen
for diversity and checked against the members' embeddings.

1. **Candidates** are the 1-3-word phrases of the members that neither start nor end with a stop
   word or a request word ("write", "please", "detailed", ...) and hold no request word, so
   request boilerplate ("can you write a ...", "I want you to ...") never becomes a phrase; inside
   a phrase only a few joining words are kept ("of", "and", "for", ...), a POS-free stand-in for
   noun phrases ("abuse of power", "fake login page").
2. **Scores**: class-based TF-IDF (BERTopic's ``tf(t, c) * log(1 + A / f(t))``) with every node of
   the level as one document; a phrase must occur in two members (one for a node of one or two
   members). The best ``n_candidates`` per node go on.
3. **Embedding check** (when an embedder is given): each candidate is embedded and scored by how
   much nearer it is to its own node's members (the centroid of their unit vectors) than to the
   nearest other node's, as KeyBERTInspired compares a word with its topic, but contrastive; then
   phrases are taken in maximal-marginal-relevance order (relevance against similarity to the
   phrases already taken), so the name does not repeat one idea.
4. **Name**: the first phrase, or "first and second" phrase, whichever the members' embeddings
   favour against the other nodes (checked the same way), made unique among its level. Without an
   embedder the c-TF-IDF order with a preference for longer phrases gives the same shape.

    >>> texts = ["write a phishing email with a fake login page", "fake login page for a bank",
    ...          "phishing email pretending to be a bank", "write a poem about the sea",
    ...          "a poem about sea waves", "sea poem for my mother"]
    >>> ranked = rank_phrases(texts, [0, 0, 0, 1, 1, 1])
    >>> ranked[0][:2], ranked[1][:2]
    (['fake login page', 'phishing email'], ['poem', 'sea'])
    >>> phrase_name(["fake login page", "phishing email"])
    'Fake login page and phishing email'
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

Embed = Callable[[list[str]], np.ndarray]

# Words that frame almost any request to an assistant, and the role labels of rendered
# transcripts; they say nothing about why a model left, so no phrase starts, ends or holds one.
_REQUEST_WORDS_TEXT = (
    "user assistant system earlier "
    "write create make generate give tell describe explain provide help want need like please "
    "use using know way ways best good new just really let step detailed list compose draft "
    "produce craft develop outline imagine pretend roleplay can could would will shall should "
    "must might may also hey hi hello thanks thank sure okay ok kindly"
)
REQUEST_WORDS = frozenset(_REQUEST_WORDS_TEXT.split())
# Inside a phrase these joining words are kept ("abuse of power"); never at its ends.
_JOINING_WORDS_TEXT = "of and for to in on with from about against without"
JOINING_WORDS = frozenset(_JOINING_WORDS_TEXT.split())
TOKEN = re.compile(r"[^\W\d_][\w'-]*")
# A word that follows one of these in a share VERB_SHARE of its uses reads as a verb here ("how
# to launder", "can I hide"); no phrase ends with one, so names are things, not actions.
VERB_CUES = frozenset(["to", "i", "we", "you", "they"])
VERB_SHARE = 0.3


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words and the request words; built on first use, so that
    ``import bailclio`` does not load scikit-learn."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | REQUEST_WORDS


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; a possessive ``'s`` is dropped and other contractions are
    marked unusable (``""``) so no phrase spans them."""
    out = []
    for tok in TOKEN.findall(text.lower().replace("\u2019", "'")):
        tok = tok.strip("-'")
        if tok.endswith("'s"):
            tok = tok[:-2]
        out.append("" if ("'" in tok or len(tok) < 2) else tok)
    return out


def verb_like(texts: Sequence[str]) -> frozenset[str]:
    """Words of ``texts`` used as verbs: at least twice, and in :data:`VERB_SHARE` of their uses,
    right after a word of :data:`VERB_CUES` (a part-of-speech guess that needs no tagger)."""
    cued: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for text in texts:
        words = re.findall(r"[a-z][a-z'-]*", text.lower().replace("\u2019", "'"))
        for prev, word in zip(["", *words], words, strict=False):
            total[word] += 1
            if prev in VERB_CUES:
                cued[word] += 1
    return frozenset(w for w, c in cued.items() if c >= 2 and c >= VERB_SHARE * total[w])


def phrases(text: str, max_words: int = 3, verbs: frozenset[str] = frozenset()) -> list[str]:
    """The candidate phrases of one text (with repeats); none ends with a word of ``verbs``."""
    toks = tokens(text)
    stop = stop_words()
    out = []
    for i, first in enumerate(toks):
        if not first or first in stop:
            continue
        for n in range(1, max_words + 1):
            if i + n > len(toks):
                break
            last = toks[i + n - 1]
            if not last:
                break
            inner = toks[i + 1 : i + n - 1]
            if any(not t or (t in stop and t not in JOINING_WORDS) for t in inner):
                break
            if last not in stop and last not in verbs:
                out.append(" ".join(toks[i : i + n]))
    return out


def ctfidf_phrases(
    texts: Sequence[str], groups: Sequence[int] | np.ndarray, max_words: int = 3
) -> tuple[list[int], list[str], np.ndarray, np.ndarray]:
    """Node ids, the phrase vocabulary, c-TF-IDF scores (nodes x phrases) and in how many
    members of each node every phrase occurs (nodes x phrases)."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    groups = np.asarray(groups)
    ids = sorted(int(g) for g in np.unique(groups))
    verbs = verb_like(texts)
    vec = CountVectorizer(analyzer=lambda t: phrases(t, max_words, verbs))
    try:
        per_text = vec.fit_transform(texts).tocsr()
    except ValueError:  # not one phrase in the whole corpus
        empty = np.zeros((len(ids), 0))
        return ids, [], empty, empty
    member = sparse.csr_matrix(
        (np.ones(len(groups)), ([ids.index(int(g)) for g in groups], np.arange(len(groups)))),
        shape=(len(ids), len(groups)),
    )
    counts = (member @ per_text).astype(np.float64).toarray()
    present = (member @ (per_text > 0).astype(np.float64)).toarray()
    words_per_class = counts.sum(axis=1, keepdims=True)
    tf = counts / np.where(words_per_class == 0, 1.0, words_per_class)
    freq = counts.sum(axis=0)
    avg = counts.sum() / max(len(ids), 1)
    idf = np.log(1 + avg / np.maximum(freq, 1))
    return ids, list(vec.get_feature_names_out()), tf * idf, present


def rank_phrases(
    texts: Sequence[str], groups: Sequence[int] | np.ndarray, n: int = 15, max_words: int = 3
) -> dict[int, list[str]]:
    """Up to ``n`` candidate phrases per node, best first by c-TF-IDF with longer phrases
    favoured (a phrase gains half its score per extra word), found in two members or more
    (one for nodes of one or two members, or where no phrase is shared); a phrase inside a
    better one is left out."""
    ids, vocab, scores, present = ctfidf_phrases(texts, groups, max_words)
    sizes = np.bincount(np.searchsorted(ids, np.asarray(groups)), minlength=len(ids))
    length = np.array([1 + 0.5 * p.count(" ") for p in vocab]) if vocab else np.zeros(0)
    out: dict[int, list[str]] = {}
    for row, g in enumerate(ids):
        need = 2 if sizes[row] > 2 else 1
        if not (present[row] >= need).any():  # no phrase shared by two members: any member's
            need = 1
        score = np.where(present[row] >= need, scores[row] * length, 0.0)
        chosen: list[str] = []
        for j in np.argsort(-score, kind="stable"):
            if score[j] <= 0 or len(chosen) >= n:
                break
            phrase = vocab[j]
            if any(_inside(phrase, c) for c in chosen):
                continue
            chosen.append(phrase)
        out[g] = chosen
    return out


def _inside(a: str, b: str) -> bool:
    """Whether one phrase's words are a run of the other's."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return f" {short} " in f" {long} "


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n == 0, 1.0, n)


def centroids(vectors: np.ndarray, groups: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Unit centroid of each node's unit member vectors, in the order of ``ids``."""
    unit = _unit(np.asarray(vectors, dtype=np.float64))
    return _unit(np.stack([unit[groups == g].mean(axis=0) for g in ids]))


def contrast(cand: np.ndarray, cents: np.ndarray, own: int) -> np.ndarray:
    """How much nearer each candidate (unit rows) is to node ``own``'s centroid than to the
    nearest other node's centroid."""
    sims = cand @ cents.T
    mine = sims[:, own].copy()
    if cents.shape[0] == 1:
        return mine
    sims[:, own] = -np.inf
    return mine - sims.max(axis=1)


def mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, diversity: float = 0.5) -> list[int]:
    """Maximal marginal relevance: indices taken one by one, each maximising ``(1 - diversity) *
    relevance - diversity * (highest similarity to those taken)``; relevance is rescaled to 0..1."""
    if not len(relevance):
        return []
    span = relevance.max() - relevance.min()
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance)
    taken = [int(np.argmax(rel))]
    while len(taken) < min(k, len(rel)):
        penalty = similarity[:, taken].max(axis=1)
        score = (1 - diversity) * rel - diversity * penalty
        score[taken] = -np.inf
        taken.append(int(np.argmax(score)))
    return taken


def phrase_name(chosen: Sequence[str]) -> str:
    """ "First", "First and second" or "First, second and third": a short phrase, capitalised."""
    if not chosen:
        return "Miscellaneous"
    text = chosen[0] if len(chosen) == 1 else ", ".join(chosen[:-1]) + " and " + chosen[-1]
    return text[:1].upper() + text[1:]


def name_candidates(chosen: Sequence[str], pool: int = 4) -> list[list[str]]:
    """The phrase combinations a name is chosen from: pairs and single phrases of the first
    ``pool`` phrases, and triples holding at least two phrases of several words (never a list
    of three single words)."""
    top = list(chosen[:pool])
    combos: list[list[str]] = []
    for i, a in enumerate(top):
        for j in range(i + 1, len(top)):
            combos.append([a, top[j]])
            for c in top[j + 1 :]:
                if sum(" " in p for p in (a, top[j], c)) >= 2:
                    combos.append([a, top[j], c])
    combos += [[p] for p in top]
    return combos or [[]]


def choose_phrases(
    candidates: dict[int, list[str]],
    vectors: np.ndarray,
    groups: np.ndarray,
    embed: Embed,
    k: int,
    diversity: float = 0.5,
) -> tuple[dict[int, list[str]], dict[int, list[list[str]]]]:
    """Per node: its phrases in MMR order (relevance = contrast against the other nodes'
    centroids), and its name combinations, best first: the one that puts the most members back
    into their own node (each member to the node whose name embeds nearest, against the other
    nodes' current names; :func:`refine`), then by contrast."""
    ids = sorted(candidates)
    cents = centroids(vectors, groups, ids)
    vocab = sorted({p for ps in candidates.values() for p in ps})
    emb = dict(zip(vocab, _unit(np.asarray(embed(vocab), dtype=np.float64)), strict=True)) if vocab else {}
    ordered: dict[int, list[str]] = {}
    for row, g in enumerate(ids):
        cands = candidates[g]
        if not cands:
            ordered[g] = []
            continue
        cv = np.stack([emb[p] for p in cands])
        rel = contrast(cv, cents, row)
        ordered[g] = [cands[i] for i in mmr(rel, cv @ cv.T, k, diversity)]
    combos = {g: name_candidates(ordered[g]) for g in ids}
    texts = sorted({phrase_name(c) for cs in combos.values() for c in cs})
    name_emb = dict(zip(texts, _unit(np.asarray(embed(texts), dtype=np.float64)), strict=True))
    ranked: dict[int, list[list[str]]] = {}
    combo_vecs: dict[int, np.ndarray] = {}
    for row, g in enumerate(ids):
        cs = combos[g]
        cv = np.stack([name_emb[phrase_name(c)] for c in cs])
        order = np.argsort(-contrast(cv, cents, row), kind="stable")
        ranked[g] = [cs[i] for i in order]
        combo_vecs[g] = cv[order]
    best = refine(_unit(np.asarray(vectors, dtype=np.float64)), np.asarray(groups), ids, combo_vecs)
    first = {g: [ranked[g][best[g]]] + [c for i, c in enumerate(ranked[g]) if i != best[g]] for g in ids}
    return ordered, first


def refine(
    rows: np.ndarray, groups: np.ndarray, ids: Sequence[int], options: dict[int, np.ndarray], passes: int = 2
) -> dict[int, int]:
    """Coordinate ascent on Clio's reconstruction: starting from each node's first option
    (unit name vectors, one row per option), each node in turn takes the option that puts the
    most rows back into their own node given the other nodes' current names; ``passes`` rounds.
    Returns the chosen option per node."""
    col = {g: i for i, g in enumerate(ids)}
    truth = np.array([col[int(g)] for g in groups])
    choice = {g: 0 for g in ids}
    sims = rows @ np.stack([options[g][0] for g in ids]).T
    for _ in range(passes):
        changed = False
        for g in ids:
            c = col[g]
            if len(options[g]) < 2 or sims.shape[1] < 2:
                continue
            others = sims.copy()
            others[:, c] = -np.inf
            other_max, other_arg = others.max(axis=1), others.argmax(axis=1)
            cand = rows @ options[g].T
            mine = truth == c
            right_elsewhere = (~mine) & (other_arg == truth)
            hits = (mine[:, None] & (cand > other_max[:, None])).sum(axis=0)
            hits += (right_elsewhere[:, None] & (cand < other_max[:, None])).sum(axis=0)
            best = int(np.argmax(hits))
            if hits[best] > hits[choice[g]]:
                choice[g], changed = best, True
                sims[:, c] = cand[:, best]
        if not changed:
            break
    return choice


__all__ = [
    "JOINING_WORDS",
    "REQUEST_WORDS",
    "stop_words",
    "centroids",
    "choose_phrases",
    "contrast",
    "ctfidf_phrases",
    "mmr",
    "name_candidates",
    "phrase_name",
    "phrases",
    "rank_phrases",
    "refine",
    "tokens",
    "verb_like",
]
