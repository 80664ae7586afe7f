"""The one registry of pluggable parts: LLM back-ends, namers, and any other stage found by name.

Each kind of part is a :class:`Registry` tied to an entry-point group. A name is found, in order,
among the parts registered in-process (:meth:`Registry.register`: built-in parts and a user's own),
then among those installed by a package under the group, so an installed package adds a part
without any change to bailclio. A package declares, in its pyproject::

    [project.entry-points."bailclio.backends"]
    mybackend = "mypackage.backend:make"     # make(llm_config, cache_path, progress) -> LLMBackend

and ``--llm mybackend`` / ``llm.backend = "mybackend"`` then uses it. A part is registered as the
object itself or, like an entry point, as the text ``"module:attribute"``, imported on first use
(so a built-in back-end's client library is imported only when it is used).

    >>> r = Registry("widget", "bailclio.widgets")
    >>> r.register("json", "json:dumps")
    >>> r.get("json")([1])
    '[1]'
    >>> r.get("nope")
    Traceback (most recent call last):
    ...
    bailclio.errors.UserError: unknown widget 'nope' (known: json)
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from bailclio.errors import UserError


def entry_point_names(group: str) -> list[str]:
    """The names installed under ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_entry_point(group: str, name: str) -> Any | None:
    """The object installed as ``name`` under ``group``, or None."""
    for ep in entry_points(group=group, name=name):
        return ep.load()
    return None


def load_target(target: str) -> Any:
    """The object named by ``"module:attribute"`` (the entry-point form)."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry:
    """Named parts of one kind (``kind``: how errors call them), extended by the entry-point
    ``group``. Names in ``reserved`` mean something else and cannot be registered."""

    def __init__(self, kind: str, group: str, *, reserved: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.reserved = reserved
        self._parts: dict[str, Any] = {}

    def register(self, name: str, part: Any) -> None:
        """Make ``name`` find ``part`` (an object, or ``"module:attribute"`` imported on first use);
        a name registered again is replaced."""
        if name in self.reserved:
            raise ValueError(f"{name!r} cannot be registered as a {self.kind}")
        self._parts[name] = part

    def unregister(self, name: str) -> None:
        self._parts.pop(name, None)

    def names(self) -> list[str]:
        """Every name: registered first (in registration order), then installed ones."""
        return list(dict.fromkeys([*self._parts, *entry_point_names(self.group)]))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> Any:
        """The part named ``name``; :class:`~bailclio.errors.UserError` for a name nobody provides."""
        part = self._parts.get(name)
        if part is None:
            part = load_entry_point(self.group, name)
            if part is None:
                known = ", ".join([*self.reserved, *self.names()])
                raise UserError(f"unknown {self.kind} {name!r} (known: {known})")
        if isinstance(part, str):
            part = load_target(part)
        self._parts[name] = part
        return part


# The registries of bailclio's pluggable parts, by entry-point group.
BACKENDS = Registry("back-end", "bailclio.backends", reserved=("none",))
NAMERS = Registry("namer", "bailclio.namers")
