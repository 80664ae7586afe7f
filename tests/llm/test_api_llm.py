"""LLM back-ends plug into the API: an instance passed in, or a back-end registered by name,
against the scripted OpenAI-compatible server on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.llm_stage_model import analyst, make_rows
from support.scripted_server import ScriptedServer

from bailclio import Taxonomer
from bailclio.config import load_config
from bailclio.errors import UserError
from bailclio.llm import ChatRequest, backend_names, make_backend, register_backend, unregister_backend
from bailclio.llm.openai_backend import OpenAIBackend

pytestmark = pytest.mark.timeout(180)
MODEL = "scripted-model"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(handler=analyst, model=MODEL) as srv:
        yield srv


def test_a_backend_instance_names_the_taxonomy_and_stays_open(server: ScriptedServer, tmp_path: Path) -> None:
    rows = make_rows(per_theme=6, injection=False)
    backend = OpenAIBackend(MODEL, base_url=server.base_url, api_key="x", cache=tmp_path / "c.sqlite")
    try:
        tx = Taxonomer(llm=backend, progress=False).fit(rows)
        tax = tx.taxonomy_
        assert tax is not None and tx.conversations_ is not None
        assert tax.meta["naming"] == "llm" and tax.meta["llm_model"] == MODEL
        assert "facet_bail_reason" in tx.conversations_.columns
        assert tx.manifest_["llm"]["backend"] == "openai" and tx.manifest_["stages"]["namer"] == "llm"
        assert {n.extra.get("name_source") for n in tax.nodes} <= {"llm", "keyphrases", "fixed"}
        calls = backend.stats()["calls"]
        assert calls > 0
        # the caller's back-end is not closed by the Taxonomer
        again = backend.generate([backend.make_request([{"role": "user", "content": "hello"}])])
        assert len(again) == 1
    finally:
        backend.close()


def test_a_keyphrase_namer_with_an_llm_keeps_facets_and_keyphrase_names(
    server: ScriptedServer, tmp_path: Path
) -> None:
    rows = make_rows(per_theme=6, injection=False)
    backend = OpenAIBackend(MODEL, base_url=server.base_url, api_key="x", cache=tmp_path / "c.sqlite")
    try:
        tx = Taxonomer(llm=backend, namer="keyphrases", progress=False).fit(rows)
    finally:
        backend.close()
    assert tx.taxonomy_ is not None and tx.conversations_ is not None
    assert tx.taxonomy_.meta["naming"] == "keyphrases"
    assert "facet_bail_reason" in tx.conversations_.columns
    assert all("name_source" not in n.extra for n in tx.taxonomy_.nodes)


def test_a_registered_backend_is_made_by_name(server: ScriptedServer, tmp_path: Path) -> None:
    made: list[Any] = []

    def factory(cfg: Any, cache: Any, *, progress: bool = True) -> OpenAIBackend:
        be = OpenAIBackend(cfg.model, base_url=server.base_url, api_key="x", cache=cache)
        made.append(be)
        return be

    register_backend("scripted-test", factory)
    try:
        assert "scripted-test" in backend_names()
        cfg = load_config(None, {"llm.backend": "scripted-test", "llm.model": MODEL})
        be = make_backend(cfg.llm, tmp_path / "c.sqlite")
        assert be is made[0]
        res = be.generate([ChatRequest(messages=[{"role": "user", "content": "hi"}])])
        assert len(res) == 1
        be.close()
    finally:
        unregister_backend("scripted-test")
    with pytest.raises(UserError, match="unknown back-end 'scripted-test'"):
        Taxonomer(load_config(None, {"llm.backend": "scripted-test", "llm.model": MODEL}))
