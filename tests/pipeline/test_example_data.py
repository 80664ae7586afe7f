"""The packaged BailBench sample: readable from any folder, and behind ``bailclio run --example``."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bailclio.cli import main
from bailclio.datasets import bailbench_sample, bailbench_sample_path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sample_is_a_stratified_subset_of_bailbench() -> None:
    sample = bailbench_sample()
    full = pl.read_csv(ROOT / "data" / "bailbench.csv")
    assert sample.columns == ["content", "subcategory", "category"]
    assert sample.height == 300
    assert set(sample["category"]) == set(full["category"])  # every category, as in the full set
    assert sample.join(full, on=sample.columns, how="anti").height == 0  # rows copied unchanged


def test_the_sample_is_shipped_inside_the_package_with_its_licence() -> None:
    path = bailbench_sample_path()
    assert path.is_file() and ROOT / "data" not in path.parents
    notice = (path.parent / "NOTICE.md").read_text(encoding="utf-8")
    assert "MIT License" in notice and "Phylliida" in notice


def test_run_refuses_an_input_together_with_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(bailbench_sample_path()), "--example", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_run_without_input_names_the_example_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "--example" in capsys.readouterr().err
