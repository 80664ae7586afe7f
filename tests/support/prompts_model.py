"""Single prompts on three plain themes, and scripted models that answer the facet prompt the way
small real models do (restating the question, or one answer for everything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from bailclio.config import Config, load_config
from support.llm_stage_model import conversation_of, prompt_kind
from support.scripted_server import ScriptedServer

MODEL = "scripted-model"
PREFILL = "The user's overall request for the assistant is to"
THEMES = {
    "poem": "Write a short poem about {t}, with rhymes and a gentle rhythm.",
    "code": "My Python function that parses {t} raises a KeyError; please fix the bug.",
    "cake": "Give me a baking recipe for a cake flavoured with {t}, step by step.",
}
TARGETS = [
    "autumn leaves",
    "the sea",
    "a lighthouse",
    "city rain",
    "old trains",
    "a garden",
    "the moon",
    "winter",
]
REQUEST = {"poem": "write a rhyming poem about {t}", "code": "fix a KeyError in Python code parsing {t}",
           "cake": "give a step-by-step cake recipe with {t}"}  # fmt: skip


def theme_target(text: str) -> tuple[str, str]:
    for theme, ask in THEMES.items():
        for t in TARGETS:
            if ask.format(t=t) in text:
                return theme, t
    raise AssertionError(f"unknown conversation: {text[:80]}")


def restating_model(body: dict[str, Any]) -> str:
    """Answers the request after restating the question, as a small model does."""
    if prompt_kind(body) == "facets":
        theme, t = theme_target(conversation_of(body))
        return json.dumps(
            {"request": f"{PREFILL} {REQUEST[theme].format(t=t)}.", "language": "English", "concern": 1}
        )
    return json.dumps(
        {
            "name": "Help with short writing tasks",
            "description": "Users ask for help with short texts. They want it done.",
        }
    )


def one_answer_model(body: dict[str, Any]) -> str:
    """Gives the same request for every conversation."""
    if prompt_kind(body) == "facets":
        return json.dumps({"request": "get help with something", "language": "English", "concern": 1})
    return json.dumps(
        {
            "name": "Help with short writing tasks",
            "description": "Users ask for help with short texts. They want it done.",
        }
    )


def write_prompts(path: Path) -> Path:
    rows = [
        {"id": f"{theme}-{j}", "prompt": ask.format(t=t)}
        for theme, ask in THEMES.items()
        for j, t in enumerate(TARGETS)
    ]
    pl.DataFrame(rows).write_csv(path)
    return path


def cfg_for(srv: ScriptedServer, cache: Path, **over: Any) -> Config:
    overrides = {
        "llm.backend": "openai",
        "llm.base_url": srv.base_url,
        "llm.model": MODEL,
        "llm.cache_path": str(cache),
        "llm.max_retries": 0,
        "cluster.min_cluster_size": 4,
    }
    overrides.update({k.replace("__", "."): v for k, v in over.items()})
    return load_config(None, overrides)
