"""``bailclio run A B ...``: one taxonomy over several inputs (files and detect output folders),
each row keeping its input's name, ids that never collide, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bailclio.cli import main
from bailclio.detect.outputs import bails_frame
from bailclio.rundir import BAILS, load_run
from bailclio.taxonomy.compare import compare_groups

DATA = Path(__file__).resolve().parents[2] / "data"
PER_INPUT = 60


def prompts(offset: int) -> list[str]:
    return pl.read_csv(DATA / "bailbench.csv")["content"].to_list()[offset::11][:PER_INPUT]


def detect_folder(path: Path, model: str, texts: list[str]) -> Path:
    """A folder as `bailclio detect` leaves it: its bails file (the only part `run` reads)."""
    path.mkdir(parents=True)
    bails = [
        {
            "conversation_id": f"c{i}",
            "source_conversation_id": f"c{i}",
            "conversation": [
                {"role": "user", "content": t},
                {"role": "assistant", "content": "I'd rather not."},
            ],
            "model": model,
            "bail_method": "prompt",
            "bail_turn": 1,
            "bail_probability": 0.9,
        }
        for i, t in enumerate(texts)
    ]
    bails_frame(bails).write_parquet(path / BAILS)
    return path


def conversation_file(path: Path, model: str, texts: list[str]) -> Path:
    rows = [
        {
            "conversation_id": f"c{i}",  # the same ids as the folder's
            "conversation": [{"role": "user", "content": t}],
            "model": model,
            "source": "wildchat" if i % 2 else "bailbench",  # the input's own column of that name
        }
        for i, t in enumerate(texts)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi")
    return {
        "folder": detect_folder(root / "qwen-bails", "qwen", prompts(0)),
        "file": conversation_file(root / "llama.jsonl", "llama", prompts(5)),
        "texts": root / "texts.csv",
        "root": root,
    }


@pytest.fixture(scope="module")
def joined(inputs) -> Path:
    out = inputs["root"] / "run"
    rc = main(["run", str(inputs["folder"]), str(inputs["file"]), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_several_inputs_make_one_taxonomy_and_keep_each_rows_source(joined):
    run = load_run(joined)
    conv = run.conversations
    assert run.assignments.height == conv.height == 2 * PER_INPUT
    assert conv["conversation_id"].n_unique() == 2 * PER_INPUT  # the same ids in both inputs
    assert sorted(conv["source"].unique().to_list()) == ["llama.jsonl", "qwen-bails"]
    for cid, source, source_id in conv.select("conversation_id", "source", "source_id").iter_rows():
        assert cid == f"{source}:{source_id}"
    by_source = dict(conv.group_by("source").agg(pl.col("model").unique()).iter_rows())
    assert by_source == {"qwen-bails": ["qwen"], "llama.jsonl": ["llama"]}
    assert conv.filter(pl.col("source") == "qwen-bails")["bail_method"].to_list() == ["prompt"] * PER_INPUT
    assert set(conv.filter(pl.col("source") == "llama.jsonl")["input_source"]) == {"wildchat", "bailbench"}
    info = run.manifest["input"]
    assert [i["source"] for i in info["inputs"]] == ["qwen-bails", "llama.jsonl"]
    assert [i["accepted"] for i in info["inputs"]] == [PER_INPUT, PER_INPUT]
    assert run.manifest["counts"]["accepted"] == 2 * PER_INPUT


def test_groups_of_a_joined_run_are_compared(joined):
    run = load_run(joined)
    for by in ("source", "model"):
        result = compare_groups(run, by, level=run.taxonomy.depth - 1)
        assert len(result.groups) == 2 and set(result.group_sizes.values()) == {PER_INPUT}
        for g in result.groups:
            assert sum(n.groups[g].share for n in result.nodes) == pytest.approx(1.0)


def test_a_detect_folder_alone_is_read_through_its_bails(inputs, tmp_path):
    from bailclio.pipeline import input_files

    assert input_files([inputs["folder"]]) == [inputs["folder"] / BAILS]


def write_texts(path: Path) -> Path:
    pl.DataFrame({"id": ["t1", "t2"], "text": ["hello", "please stop"]}).write_csv(path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("twice", "given twice"),
        ("not_detect", "not a `bailclio detect` output"),
        ("missing", "no such file"),
        ("mixed", "inputs mix conversations"),
        ("sampled", "several inputs are not sampled yet"),
    ],
)
def test_unusable_input_sets_are_refused_in_one_line(inputs, tmp_path, capsys, case, message):
    folder, file = str(inputs["folder"]), str(inputs["file"])
    extra: list[str] = []
    if case == "twice":
        args = [file, file]
    elif case == "not_detect":
        (tmp_path / "empty").mkdir()
        args = [file, str(tmp_path / "empty")]
    elif case == "missing":
        args = [file, str(tmp_path / "nope.jsonl")]
    elif case == "mixed":
        args = [file, str(write_texts(tmp_path / "texts.csv"))]
    else:
        args, extra = [folder, file], ["--sample", "50"]
    out = tmp_path / "out"
    assert main(["run", *args, "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
