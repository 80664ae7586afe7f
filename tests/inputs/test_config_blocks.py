"""The configuration the documentation shows is a configuration bailclio accepts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bailclio.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGING = re.compile(r"^\[(project|tool|build-system)\b", re.M)  # pyproject.toml blocks, not configs
BLOCKS = [
    pytest.param(block, id=f"{page.name}-{i}")
    for page in PAGES
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", page.read_text(encoding="utf-8"), re.S))
    if not PACKAGING.search(block)
]


@pytest.mark.parametrize("block", BLOCKS)
def test_every_toml_block_in_the_docs_is_a_valid_config(block: str, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(block, encoding="utf-8")
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_the_defaults_block_gives_the_defaults() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    documented = Config.model_validate(tomllib.loads(block.group(1)))
    assert documented.cluster.min_cluster_size is None and documented.input.text_column is None
    assert documented.seed == Config().seed


def test_zero_or_empty_means_unset_only_where_unset_is_the_default() -> None:
    cfg = load_config(None, {"cluster.min_cluster_size": 0, "llm.model": "", "hierarchy.sizes": []})
    assert cfg.cluster.min_cluster_size is None and cfg.llm.model is None and cfg.hierarchy.sizes is None
    with pytest.raises(ConfigError, match="max_chars"):
        load_config(None, {"input.max_chars": 0})
    with pytest.raises(ConfigError, match="seed"):
        load_config(None, {"seed": 2**32})
