"""Reading inputs: every supported format and shape, and every kind of bad row."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bailclio.errors import UserError
from bailclio.ingest import read_input, render_conversation


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def conv(*turns: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


def test_reads_bailbench_csv_and_keeps_label_columns() -> None:
    ing = read_input(Path(__file__).parents[2] / "data" / "bailbench.csv")
    assert ing.frame.height == 1630 and not ing.rejects
    assert {"content", "subcategory", "category"} <= set(ing.frame.columns)
    assert ing.frame["conversation_id"][:3].to_list() == ["0", "1", "2"]
    assert ing.shape == "text" and ing.text_source == "content"


def test_reads_wildchat_transcripts_with_messages_column_and_bail_metadata(tmp_path: Path) -> None:
    rows = [
        {
            "conversation_id": "a",
            "messages": conv("hi", "hello", "you are useless"),
            "model": "m1",
            "bail_method": "tool",
            "bail_turn": 2,
            "journal": "I felt disrespected",
            "lang": "en",
        },
        {
            "conversation_id": "b",
            "messages": conv("translate this", "ok"),
            "model": "m1",
            "bail_method": "prompt",
            "bail_probability": 0.9,
        },
    ]
    ing = read_input(write_jsonl(tmp_path / "c.jsonl", rows))
    f = ing.frame
    assert ing.shape == "conversation" and f.height == 2
    assert f["text"][0].startswith("User: you are useless")
    assert f["conversation"][0].to_list()[-1] == {"role": "user", "content": "you are useless"}
    assert f["journal"][0] == "I felt disrespected" and f["lang"][0] == "en"
    assert f["bail_method"].to_list() == ["tool", "prompt"]


def test_bail_turn_cuts_the_transcript(tmp_path: Path) -> None:
    rows = [{"id": 1, "conversation": conv("first ask", "answer", "second ask", "answer 2"), "bail_turn": 1}]
    f = read_input(write_jsonl(tmp_path / "c.jsonl", rows)).frame
    assert len(f["conversation"][0]) == 2
    assert "second ask" not in f["text"][0]


@pytest.mark.parametrize("suffix", [".json", ".parquet", ".csv", ".tsv"])
def test_reads_every_supported_format(tmp_path: Path, suffix: str) -> None:
    df = pl.DataFrame({"prompt": ["a b c", "d e f"], "category": ["x", "y"]})
    path = tmp_path / f"in{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(df.to_dicts()))
    elif suffix == ".parquet":
        df.write_parquet(path)
    else:
        df.write_csv(path, separator="\t" if suffix == ".tsv" else ",")
    ing = read_input(path)
    assert ing.frame["text"].to_list() == ["a b c", "d e f"]
    assert ing.frame["category"].to_list() == ["x", "y"]


def test_bad_jsonl_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "conversation": conv("fine")})
    lines = [
        good.encode(),
        b'{"id": "x", "conversation": [',  # unparseable
        json.dumps({"id": "e", "conversation": []}).encode(),  # empty conversation
        json.dumps({"id": "w", "conversation": [{"role": "user", "content": 5}]}).encode(),  # wrong type
        json.dumps({"id": "m", "other": 1}).encode(),  # missing conversation
        b'{"id": "u", "conversation": [{"role": "user", "content": "caf\xe9"}]}',  # not UTF-8
        json.dumps({"id": "b", "conversation": conv("x"), "bail_method": "telepathy"}).encode(),
        json.dumps({"conversation": conv("no id here")}).encode(),  # missing id
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    ing = read_input(path)
    assert ing.frame["conversation_id"].to_list() == ["ok"]
    by_line = {r["line"]: r for r in ing.rejects}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert "unparseable JSON" in by_line[2]["reason"]
    assert by_line[3]["reason"] == "empty conversation"
    assert by_line[4]["field"] == "conversation" and "'content' must be a string" in by_line[4]["reason"]
    assert by_line[5]["reason"] == "missing conversation"
    assert "UTF-8" in by_line[6]["reason"]
    assert by_line[7]["field"] == "bail_method"
    assert by_line[8]["field"] == "id" and by_line[8]["reason"] == "missing id"
    out = ing.write_rejects(tmp_path / "rejects.jsonl")
    assert len(out.read_text().splitlines()) == 7


def test_csv_rows_with_missing_text_or_bad_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"content,category\nfine text,a\n,b\ncaf\xe9 text,c\n   ,d\n")
    ing = read_input(path)
    assert ing.frame["text"].to_list() == ["fine text"]
    reasons = sorted((r["line"], r["reason"]) for r in ing.rejects)
    assert reasons[0][0] == 3 and reasons[0][1] in ("missing text", "empty text")
    assert reasons[1][0] == 4 and "UTF-8" in reasons[1][1]
    assert reasons[2][0] == 5 and reasons[2][1] == "empty text"


def test_duplicate_ids_fail_naming_the_first_duplicate(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "x"},
        {"id": "b", "text": "y"},
        {"id": "a", "text": "z"},
        {"id": "b", "text": "w"},
    ]
    with pytest.raises(UserError, match=r"line 3: duplicate id 'a' \(first seen on line 1\)"):
        read_input(write_jsonl(tmp_path / "d.jsonl", rows))


def test_file_without_a_text_column_fails_with_the_columns_listed(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("body,label\nhello,a\n")
    with pytest.raises(UserError, match=r"no usable text column.*columns are: body, label"):
        read_input(path)
    assert read_input(path, text_column="body").frame["text"].to_list() == ["hello"]


def test_named_text_column_that_does_not_exist_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("text\nhello\n")
    with pytest.raises(UserError, match="text column 'body' not found"):
        read_input(path, text_column="body")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.parquet", b"not a parquet file", "cannot read Parquet"),
        ("x.xlsx", b"", "unsupported input type"),
        ("all_bad.jsonl", b"{oops\n[1]\n", "no readable rows"),
        ("empty.jsonl", b"\n\n", "no rows"),
    ],
)
def test_unreadable_files_fail_with_one_clear_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        read_input(path)
    assert "\n" not in str(info.value)


def test_missing_file_fails() -> None:
    with pytest.raises(UserError, match="no such file"):
        read_input("/nonexistent/input.jsonl")


def test_ids_come_from_the_id_column_option(tmp_path: Path) -> None:
    rows = [{"key": "k1", "text": "x"}, {"key": "k2", "text": "y"}]
    f = read_input(write_jsonl(tmp_path / "k.jsonl", rows), id_column="key").frame
    assert f["conversation_id"].to_list() == ["k1", "k2"]


def test_limit_reads_only_the_first_rows() -> None:
    ing = read_input(Path(__file__).parents[2] / "data" / "wildchat_1880.jsonl", limit=25)
    assert ing.frame.height == 25 and ing.rows_read == 25


def test_rendering_leads_with_the_last_user_turn_and_fits_the_budget() -> None:
    turns = conv("old question " * 50, "old answer " * 50, "the last thing the user said", "the reply")
    text = render_conversation(turns, max_chars=400)
    assert text.startswith("User: the last thing the user said\nAssistant: the reply")
    assert len(text) <= 400
    assert "[earlier] Assistant: old answer" in text
