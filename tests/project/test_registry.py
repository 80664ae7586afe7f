"""One registry for every pluggable part: a back-end and a namer installed by a package (a real
distribution with an ``entry_points.txt`` on ``sys.path``) are found by name the same way as the
built-in ones; registering in-process works the same for both; unknown names are one clear error."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bailclio.components import KeyphraseNamer, make_namer, namer_names
from bailclio.config import Config, LLMConfig
from bailclio.errors import UserError
from bailclio.llm import backend_names, make_backend
from bailclio.plugins import BACKENDS, NAMERS, Registry

PLUGIN = textwrap.dedent(
    """
    from bailclio.components import KeyphraseNamer


    class Made:
        def __init__(self, model, cache):
            self.model, self.cache = model, cache


    def make_backend(cfg, cache, progress=True):
        return Made(cfg.model, cache)


    def make_namer(config, llm):
        return KeyphraseNamer(config.naming)
    """
)


@pytest.fixture()
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``bc_plugin_test`` installed with one back-end and one namer entry point."""
    (tmp_path / "bc_plugin_test.py").write_text(PLUGIN)
    info = tmp_path / "bc_plugin_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bc-plugin-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[bailclio.backends]\nplugged = bc_plugin_test:make_backend\n\n"
        "[bailclio.namers]\nplugged = bc_plugin_test:make_namer\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "plugged"
    BACKENDS.unregister("plugged")
    NAMERS.unregister("plugged")
    sys.modules.pop("bc_plugin_test", None)


def test_an_installed_backend_and_namer_are_found_by_name(installed_plugin: str, tmp_path: Path) -> None:
    name = installed_plugin
    assert name in backend_names() and name in namer_names()
    be = make_backend(LLMConfig(backend=name, model="m"), tmp_path / "c.sqlite")
    assert type(be).__module__ == "bc_plugin_test"
    assert (be.model, be.cache) == ("m", tmp_path / "c.sqlite")  # type: ignore[union-attr]
    assert isinstance(make_namer(name, Config()), KeyphraseNamer)


def test_the_built_in_parts_are_in_the_same_registries() -> None:
    assert {"openai", "vllm"} <= set(backend_names()) and {"keyphrases", "llm"} <= set(namer_names())
    assert BACKENDS.group == "bailclio.backends" and NAMERS.group == "bailclio.namers"


def test_unknown_names_are_one_clear_error_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"llm.backend: unknown back-end 'nope' \(known: none, openai, vllm"):
        make_backend(LLMConfig(backend="nope", model="m"), None)
    with pytest.raises(UserError, match=r"unknown namer 'nope' \(known: keyphrases, llm"):
        make_namer("nope", Config())


def test_a_part_registered_as_module_and_attribute_is_imported_on_first_use() -> None:
    registry = Registry("widget", "bailclio.test-widgets")
    registry.register("path", "pathlib:PurePosixPath.joinpath")
    assert registry.get("path")(Path("/a"), "b") == Path("/a/b")
    assert registry.names() == ["path"]
    with pytest.raises(ValueError, match="cannot be registered"):
        Registry("back-end", "g", reserved=("none",)).register("none", object())
