"""Is a name about its own members? The embedding check behind every LLM-written name.

A name and description are embedded with the run's embedding model and compared with the
members they name: ``own`` is the mean cosine similarity between the name and the node's
members, ``nearest`` the highest mean similarity to the members of one of the node's nearest
siblings (the other nodes of its level whose centroids are closest), and ``margin = own -
nearest``. A name is grounded when its margin is above ``min_margin``: it describes its own
members better than it describes the groups it is most easily confused with. A name that no
member supports (a copied example, the name of the bail instead of the request) fails this.

:func:`reconstruction_accuracy` is Clio's check of a whole level: every member is put back into
the node whose name and description are nearest to it, and the share that lands in its own node
is reported.

    >>> import numpy as np
    >>> vecs = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> g = Grounder(vecs, lambda texts: np.array([[1.0, 0.0] if t == "x" else [0.0, 1.0] for t in texts]))
    >>> res = g.check(np.array([0, 0, 1, 1]), {0: "x", 1: "x"})
    >>> [round(res[k].margin, 2) for k in (0, 1)], [res[k].grounded for k in (0, 1)]
    ([0.94, -0.94], [True, False])
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

Embed = Callable[[list[str]], np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n == 0, 1.0, n)


@dataclass
class Grounding:
    margin: float | None  # None: no sibling to be confused with
    own: float
    nearest: float | None
    nearest_id: int | None
    grounded: bool

    def to_extra(self) -> dict[str, float | bool | None]:
        return {
            "grounding_margin": None if self.margin is None else round(self.margin, 4),
            "grounded": self.grounded,
        }

    def explain(self) -> str:
        if self.margin is None:
            return "no sibling to compare with"
        return (
            f"similarity to its own members {self.own:.3f}, to the members of the nearest "
            f"sibling {self.nearest:.3f} (margin {self.margin:+.3f})"
        )


class Grounder:
    """Checks names of the groups of one set of row vectors (one row per clustered text)."""

    def __init__(self, vectors: np.ndarray, embed: Embed, *, min_margin: float = 0.0, siblings: int = 3):
        self.vectors = _unit(np.asarray(vectors, dtype=np.float64))
        self.embed = embed
        self.min_margin = min_margin
        self.siblings = siblings

    def check(
        self, groups: np.ndarray, texts: dict[int, str], *, exclude: Collection[int] = ()
    ) -> dict[int, Grounding]:
        """A :class:`Grounding` for every node in ``texts`` (node id -> its name and description);
        ``groups`` gives each row's node; nodes in ``exclude`` are never used as siblings."""
        if not texts:
            return {}
        keys = sorted(texts)
        named = self.embed([texts[k] for k in keys])
        return self.check_vectors(groups, dict(zip(keys, named, strict=True)), exclude=exclude)

    def check_vectors(
        self, groups: np.ndarray, named: dict[int, np.ndarray], *, exclude: Collection[int] = ()
    ) -> dict[int, Grounding]:
        """:meth:`check` for texts already embedded (node id -> the vector of its text)."""
        if not named:
            return {}
        ids = [int(g) for g in np.unique(groups)]
        means = {g: self.vectors[groups == g].mean(axis=0) for g in ids}
        others = [g for g in ids if g not in set(exclude)]
        cents = _unit(np.stack([means[g] for g in others])) if others else np.zeros((0, 1))
        keys = sorted(named)
        vecs = _unit(np.stack([np.asarray(named[k], dtype=np.float64) for k in keys]))
        out: dict[int, Grounding] = {}
        for k, v in zip(keys, vecs, strict=True):
            own = float(v @ means[k])
            cand = [j for j, g in enumerate(others) if g != k]
            if not cand:
                out[k] = Grounding(None, own, None, None, True)
                continue
            c = _unit(means[k])
            near = sorted(cand, key=lambda j: -float(cents[j] @ c))[: self.siblings]
            sims = {others[j]: float(v @ means[others[j]]) for j in near}
            nearest_id = max(sims, key=lambda g: sims[g])
            margin = own - sims[nearest_id]
            out[k] = Grounding(margin, own, sims[nearest_id], nearest_id, margin > self.min_margin)
        return out


def reconstruction_accuracy(
    vectors: np.ndarray, groups: np.ndarray, texts: dict[int, str], embed: Embed
) -> float:
    """Share of rows whose nearest node text (name and description, by cosine) is their own
    node's (Clio's reconstruction check); rows of nodes without a text are not counted."""
    keys = sorted(texts)
    named = _unit(np.asarray(embed([texts[k] for k in keys]), dtype=np.float64))
    rows = np.isin(groups, keys)
    if not rows.any():
        return float("nan")
    sims = _unit(np.asarray(vectors, dtype=np.float64)[rows]) @ named.T
    guess = np.asarray(keys)[np.argmax(sims, axis=1)]
    return float((guess == groups[rows]).mean())


class Reconstruction:
    """Every row put back into the node whose text is nearest to it (as in
    :func:`reconstruction_accuracy`), kept up to date while node texts are replaced one at a time.

    It keeps each row's best and second-best node, so the effect of a new text for one node
    (:meth:`gain`) costs one pass over the rows, not a rows-by-nodes matrix.

    >>> import numpy as np
    >>> rows = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> p = Reconstruction(rows, np.array([0, 0, 1]), {0: np.array([1.0, 0.0]), 1: np.array([0.6, 0.8])})
    >>> p.hits, p.missed(0).tolist(), p.gain(1, np.array([0.0, 1.0]))
    (2, [1], 1)
    >>> p.set(1, np.array([0.0, 1.0])); p.hits
    3
    """

    def __init__(self, vectors: np.ndarray, groups: np.ndarray, named: dict[int, np.ndarray]):
        self.keys = sorted(named)
        self.col = {k: i for i, k in enumerate(self.keys)}
        rows = np.isin(groups, self.keys)
        self.index = np.flatnonzero(rows)
        self.vectors = _unit(np.asarray(vectors, dtype=np.float64)[rows])
        self.truth = np.array([self.col[int(g)] for g in groups[rows]], dtype=np.int64)
        self.named = _unit(np.stack([np.asarray(named[k], dtype=np.float64) for k in self.keys]))
        self.best = np.zeros((len(self.index), 2), dtype=np.int64)
        self.value = np.zeros((len(self.index), 2))
        self._rank(np.arange(len(self.index)))

    def _rank(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        sims = self.vectors[rows] @ self.named.T
        if sims.shape[1] == 1:
            self.best[rows] = 0
            self.value[rows, 0], self.value[rows, 1] = sims[:, 0], -np.inf
            return
        order = np.argsort(-sims, axis=1, kind="stable")[:, :2]
        self.best[rows] = order
        self.value[rows] = np.take_along_axis(sims, order, axis=1)

    @property
    def hits(self) -> int:
        return int((self.best[:, 0] == self.truth).sum())

    def missed(self, node: int) -> np.ndarray:
        """Rows (indices into the ``groups`` given) of ``node`` placed in another node."""
        c = self.col[node]
        return self.index[(self.truth == c) & (self.best[:, 0] != c)]

    def taken(self, node: int) -> np.ndarray:
        """Rows (indices into the ``groups`` given) of other nodes placed in ``node``."""
        c = self.col[node]
        return self.index[(self.truth != c) & (self.best[:, 0] == c)]

    def _guess(self, c: int, sims: np.ndarray) -> np.ndarray:
        own_best = self.best[:, 0] == c
        other = np.where(own_best, self.value[:, 1], self.value[:, 0])
        other_col = np.where(own_best, self.best[:, 1], self.best[:, 0])
        return np.where(sims > other, c, other_col)

    def gain(self, node: int, vector: np.ndarray) -> int:
        """How many more rows would land in their own node if ``node``'s text had ``vector``."""
        c = self.col[node]
        sims = self.vectors @ _unit(np.asarray(vector, dtype=np.float64))
        return int((self._guess(c, sims) == self.truth).sum()) - self.hits

    def set(self, node: int, vector: np.ndarray) -> None:
        c = self.col[node]
        self.named[c] = _unit(np.asarray(vector, dtype=np.float64))
        self._rank(np.flatnonzero((self.best == c).any(axis=1)))
        sims = self.vectors @ self.named[c]
        up = np.flatnonzero((sims > self.value[:, 1]) & (self.best != c).all(axis=1))
        self._rank(up)


__all__ = ["Embed", "Grounder", "Grounding", "Reconstruction", "reconstruction_accuracy"]
