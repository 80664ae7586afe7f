"""The taxonomy model shared by the pipeline, the explorer and the commands.

A taxonomy is a forest of nodes; level 0 is the top. ``taxonomy.json`` holds
``{"format_version", "levels", "nodes": [{"id", "parent_id", "level", "name", "description", "size",
"keywords", "exemplar_ids"}, ...]}``; a node may carry more (``share``, ``stability``, naming
details), kept in ``Node.extra``. ``stability`` in [0, 1] is how reliably the node is found again
when the clustering is refitted (:mod:`bailclio.stability`); below :data:`UNSTABLE_BELOW` the
node is marked unstable.

Example::

    >>> t = Taxonomy([Node("T0", None, 0, "harm", size=3), Node("L0", "T0", 1, "bombs", size=3)])
    >>> [n.id for n in t.path("L0")]
    ['T0', 'L0']
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
# Older run directories this version still reads (format 1 had a fixed three levels and a
# ``mid_id`` column, which is dropped on load: every reader uses ``path``).
READABLE_FORMAT_VERSIONS = (1, 2)
UNSTABLE_BELOW = 0.5  # a node whose stability is below this is marked unstable (show, export, explorer)


def node_id(level: int, index: int, depth: int) -> str:
    """The id of node ``index`` at ``level`` in a taxonomy of ``depth`` levels: ``T<i>`` on top,
    ``L<i>`` for leaves, ``M<i>`` for the one intermediate level of a 3-level taxonomy and
    ``M<level>.<i>`` for intermediate levels of other depths.

    >>> [node_id(0, 3, 3), node_id(1, 3, 3), node_id(2, 3, 3), node_id(2, 0, 5)]
    ['T3', 'M3', 'L3', 'M2.0']
    """
    if level == depth - 1:
        return f"L{index}"
    if level == 0:
        return f"T{index}"
    return f"M{index}" if depth == 3 else f"M{level}.{index}"


def level_stem(level: int, depth: int) -> str:
    """The column stem of ``level`` in a taxonomy of ``depth`` levels: ``top`` for level 0,
    ``leaf`` for the last level, ``level_<d>`` between (exports write ``<stem>_id`` and
    ``<stem>_name``). A one-level taxonomy's only level is ``leaf``.

    >>> [level_stem(lv, 5) for lv in range(5)]
    ['top', 'level_1', 'level_2', 'level_3', 'leaf']
    """
    if not 0 <= level < depth:
        raise ValueError(f"level {level} does not exist (levels 0..{depth - 1})")
    if level == depth - 1:
        return "leaf"
    return "top" if level == 0 else f"level_{level}"


def level_stems(depth: int) -> list[str]:
    """:func:`level_stem` of every level, top first."""
    return [level_stem(lv, depth) for lv in range(depth)]


def level_label(level: int, depth: int) -> str:
    """A level's name for people: ``top``, ``leaf``, ``intermediate`` (the middle of three
    levels) or ``level <d>``.

    >>> [level_label(1, 3), level_label(2, 4)]
    ['intermediate', 'level 2']
    """
    stem = level_stem(level, depth)
    if stem in ("top", "leaf"):
        return stem
    return "intermediate" if depth == 3 else f"level {level}"


@dataclass
class Node:
    id: str
    parent_id: str | None
    level: int
    name: str
    description: str = ""
    size: int = 0
    keywords: list[str] = field(default_factory=list)
    exemplar_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stability(self) -> float | None:
        """How reliably the node is found again when the clustering is refitted, in [0, 1]; None
        when the run did not measure it (``stability_refits = 0``, or an older run)."""
        value = self.extra.get("stability")
        return None if value is None else float(value)

    @property
    def unstable(self) -> bool:
        """Measured, and below :data:`UNSTABLE_BELOW`.

        >>> Node("L0", None, 0, "x", extra={"stability": 0.3}).unstable, Node("L1", None, 0, "y").unstable
        (True, False)
        """
        return self.stability is not None and self.stability < UNSTABLE_BELOW

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


NODE_FIELDS = ("id", "parent_id", "level", "name", "description", "size", "keywords", "exemplar_ids")


class TaxonomyError(ValueError):
    pass


def check_forest(tax: Taxonomy, source: str) -> None:
    """The parent links form a forest: ids are unique, every parent exists, no node is its own
    ancestor (a cycle would make every walk up the tree endless)."""
    if len(tax.by_id) != len(tax.nodes):
        dup = next(i for i, k in Counter(n.id for n in tax.nodes).items() if k > 1)
        raise TaxonomyError(f"{source}: node '{dup}' appears more than once")
    for n in tax.nodes:
        if n.parent_id is not None and n.parent_id not in tax.by_id:
            raise TaxonomyError(f"{source}: node '{n.id}': parent '{n.parent_id}' does not exist")
    settled: set[str] = set()  # nodes known to reach a root
    for n in tax.nodes:
        trail: list[str] = []
        on_trail: set[str] = set()
        node: Node | None = n
        while node is not None and node.id not in settled:
            if node.id in on_trail:
                raise TaxonomyError(f"{source}: node '{node.id}': its parent links form a cycle")
            trail.append(node.id)
            on_trail.add(node.id)
            node = tax.by_id[node.parent_id] if node.parent_id is not None else None
        settled.update(trail)


class Taxonomy:
    def __init__(self, nodes: list[Node], meta: dict[str, Any] | None = None) -> None:
        self.nodes = list(nodes)
        self.meta = dict(meta or {})
        self._reindex()

    def _reindex(self) -> None:
        self.by_id = {n.id: n for n in self.nodes}
        self._children: dict[str | None, list[Node]] = {}
        for n in self.nodes:
            self._children.setdefault(n.parent_id, []).append(n)

    # ---- queries
    @property
    def depth(self) -> int:
        return max((n.level for n in self.nodes), default=-1) + 1

    def level(self, level: int) -> list[Node]:
        return [n for n in self.nodes if n.level == level]

    @property
    def roots(self) -> list[Node]:
        return self._children.get(None, [])

    @property
    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if not self._children.get(n.id)]

    def children(self, node_id: str | None) -> list[Node]:
        return self._children.get(node_id, [])

    def path(self, node_id: str) -> list[Node]:
        out = []
        node: Node | None = self.by_id[node_id]
        while node is not None:
            out.append(node)
            node = self.by_id.get(node.parent_id) if node.parent_id else None
        return out[::-1]

    def ancestor_at(self, node_id: str, level: int) -> Node:
        """The node on ``node_id``'s path at ``level`` (the node itself when it is shallower)."""
        path = self.path(node_id)
        return path[min(level, len(path) - 1)]

    def ids_at(self, level: int, leaf_ids: Iterable[str | None]) -> list[str | None]:
        """The id of each leaf's ancestor at ``level`` (``None`` stays ``None``).

        >>> t = Taxonomy([Node("T0", None, 0, "a"), Node("L0", "T0", 1, "b"), Node("L1", "T0", 1, "c")])
        >>> t.ids_at(0, ["L1", None, "L0"])
        ['T0', None, 'T0']
        """
        cache: dict[str, str] = {}
        out: list[str | None] = []
        for leaf in leaf_ids:
            if leaf is None:
                out.append(None)
                continue
            if leaf not in cache:
                if leaf not in self.by_id:
                    raise TaxonomyError(f"node '{leaf}' is not in the taxonomy")
                cache[leaf] = self.ancestor_at(leaf, level).id
            out.append(cache[leaf])
        return out

    def descendants(self, node_id: str) -> list[Node]:
        out, stack = [], list(self.children(node_id))
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(self.children(n.id))
        return out

    def leaf_ids_under(self, node_id: str) -> list[str]:
        node = self.by_id[node_id]
        if not self.children(node.id):
            return [node.id]
        return [n.id for n in self.descendants(node_id) if not self.children(n.id)]

    # ---- io
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "levels": self.depth,
            **self.meta,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "taxonomy.json") -> Taxonomy:
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise TaxonomyError(f"{source}: expected an object with a 'nodes' list")
        version = data.get("format_version", FORMAT_VERSION)
        if version not in READABLE_FORMAT_VERSIONS:
            raise TaxonomyError(
                f"{source}: format_version {version} is not supported (this bailclio reads {FORMAT_VERSION})"
            )
        nodes = []
        for i, raw in enumerate(data["nodes"]):
            if not isinstance(raw, dict):
                raise TaxonomyError(f"{source}: node {i}: expected an object")
            missing = [f for f in ("id", "parent_id", "level", "name") if f not in raw]
            if missing:
                raise TaxonomyError(f"{source}: node {i}: missing field '{missing[0]}'")
            if not isinstance(raw["level"], int) or isinstance(raw["level"], bool) or raw["level"] < 0:
                raise TaxonomyError(f"{source}: node {i}: 'level' must be a whole number >= 0")
            extra = {k: v for k, v in raw.items() if k not in NODE_FIELDS}
            nodes.append(
                Node(
                    id=str(raw["id"]),
                    parent_id=raw["parent_id"],
                    level=int(raw["level"]),
                    name=str(raw["name"]),
                    description=str(raw.get("description", "")),
                    size=int(raw.get("size", 0)),
                    keywords=list(raw.get("keywords", [])),
                    exemplar_ids=[str(x) for x in raw.get("exemplar_ids", [])],
                    extra=extra,
                )
            )
        meta = {k: v for k, v in data.items() if k not in ("nodes", "format_version", "levels")}
        tax = cls(nodes, meta)
        check_forest(tax, source)
        return tax

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise TaxonomyError(f"{p}: not found") from exc
        except json.JSONDecodeError as exc:
            raise TaxonomyError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        return cls.from_dict(data, str(p))
