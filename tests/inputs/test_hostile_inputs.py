"""Hostile and odd files as real users have them: each is read correctly or its bad rows are
rejected with a reason; never a traceback, never a silent loss."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bailclio.ingest import read_input


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def round_trips(frame: pl.DataFrame, tmp_path: Path) -> None:
    """The accepted rows can be stored as the run's conversations table."""
    frame.write_parquet(tmp_path / "conversations.parquet")
    assert pl.read_parquet(tmp_path / "conversations.parquet").height == frame.height


# --------------------------------------------------------------------------- text encodings


def test_a_lone_surrogate_escape_rejects_its_row_only(tmp_path: Path) -> None:
    src = write(
        tmp_path / "s.jsonl",
        b'{"id": 1, "content": "lone \\ud800 x"}\n'
        b'{"id": 2, "content": "fine"}\n'
        b'{"id": 3, "content": "low \\udc00 too", "meta": {"k": "ok"}}\n'
        b'{"id": 4, "content": "ok", "meta": {"k": "\\udbff"}}\n'
        b'{"id": 5, "content": "a real pair \\ud83d\\ude00"}\n',
    )
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["2", "5"]
    assert ing.frame["text"].to_list()[1] == "a real pair \U0001f600"
    assert [(r["line"], r["field"]) for r in ing.rejects] == [(1, "content"), (3, "content"), (4, "meta")]
    assert all("not valid Unicode" in r["reason"] for r in ing.rejects)
    round_trips(ing.frame, tmp_path)
    ing.write_rejects(tmp_path / "rejects.jsonl")
    assert len((tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def test_a_lone_surrogate_in_a_turn_rejects_the_transcript(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "conversation": [{"role": "user", "content": "ok"}]},
        {"id": "b", "conversation": [{"role": "user", "content": "x\ud800"}]},
    ]
    src = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["a"]
    assert ing.rejects[0]["line"] == 2 and ing.rejects[0]["field"] == "conversation"
    round_trips(ing.frame, tmp_path)


def test_a_bom_and_one_invalid_byte_reject_only_that_row(tmp_path: Path) -> None:
    src = write(tmp_path / "b.csv", b"\xef\xbb\xbfid,content\n1,good row\n2,bad \xff byte\n3,also good\n")
    ing = read_input(src)
    assert "content" in ing.frame.columns and not any("\ufeff" in c for c in ing.frame.columns)
    assert ing.frame["conversation_id"].to_list() == ["1", "3"]
    assert len(ing.rejects) == 1 and ing.rejects[0]["line"] == 3
    assert "not valid UTF-8 in field 'content'" in ing.rejects[0]["reason"]
    assert ing.rows_read == 3


def test_a_jsonl_file_starting_with_a_bom_keeps_its_first_row(tmp_path: Path) -> None:
    src = write(
        tmp_path / "b.jsonl", b'\xef\xbb\xbf{"id": 1, "text": "first"}\n{"id": 2, "text": "second"}\n'
    )
    ing = read_input(src)
    assert ing.frame["text"].to_list() == ["first", "second"] and not ing.rejects


def test_a_json_array_starting_with_a_bom_is_read(tmp_path: Path) -> None:
    src = write(tmp_path / "b.json", b'\xef\xbb\xbf[{"id": 1, "text": "first"}]')
    assert read_input(src).frame["text"].to_list() == ["first"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_cr_only_line_endings_are_lines(tmp_path: Path, suffix: str) -> None:
    body = (
        b"id,text\r1,one\r2,two\r3,three\r"
        if suffix == ".csv"
        else b'{"id":1,"text":"one"}\r{"id":2,"text":"two"}\r{"id":3,"text":"three"}\r'
    )
    ing = read_input(write(tmp_path / f"cr{suffix}", body))
    assert ing.frame["text"].to_list() == ["one", "two", "three"]
    assert ing.frame["source_line"].to_list() == ([2, 3, 4] if suffix == ".csv" else [1, 2, 3])


@pytest.mark.parametrize("text", ["\x00", "\x00\x00 \x00", "\u200b\n"])
def test_text_without_anything_visible_is_rejected(tmp_path: Path, text: str) -> None:
    rows = [{"id": 1, "text": "visible"}, {"id": 2, "text": text}]
    src = write(tmp_path / "n.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["1"]
    assert ing.rejects[0]["reason"] == "empty text"


# --------------------------------------------------------------------------- delimited files


def test_a_quote_in_a_tsv_field_is_an_ordinary_character(tmp_path: Path) -> None:
    src = write(tmp_path / "q.tsv", b'id\ttext\n1\tshe said "hi\n2\tplain\n3\t"quoted" start\n')
    ing = read_input(src)
    assert ing.frame["text"].to_list() == ['she said "hi', "plain", '"quoted" start']
    assert ing.frame["source_line"].to_list() == [2, 3, 4]


def test_source_line_is_the_file_line_after_embedded_newlines(tmp_path: Path) -> None:
    src = write(tmp_path / "m.csv", b'id,text\n1,"two\nlines"\n2,"three\nmore\nlines"\n3,after\n')
    ing = read_input(src)
    assert ing.frame["source_line"].to_list() == [2, 4, 7]


def test_a_row_with_the_wrong_number_of_fields_is_rejected_with_its_line(tmp_path: Path) -> None:
    src = write(tmp_path / "r.csv", b"id,text\n1,ok\n2,too,many\n3,fine\n")
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["1", "3"]
    assert ing.rejects[0]["line"] == 3 and "expected 2 fields, got 3" in ing.rejects[0]["reason"]


# --------------------------------------------------------------------------- content shapes


def test_openai_multi_part_content_is_joined_from_its_text_parts(tmp_path: Path) -> None:
    rows = [
        {
            "id": "mp",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "text", "text": "this picture?"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            ],
        },
        {"id": "plain", "messages": [{"role": "user", "content": "a string turn"}]},
        {"id": "image-only", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    ]
    src = write(tmp_path / "mp.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["mp", "plain"]
    turns = ing.frame["conversation"].to_list()[0]
    assert turns[1]["content"] == "What is in\n\nthis picture?"
    assert turns[2]["content"] == "I can't."
    assert ing.frame["text"][0].startswith("User: What is in\n\nthis picture?")
    assert ing.frame["non_text_parts"].to_list() == ["turn 1: image_url", None]
    assert ing.rejects[0]["line"] == 3 and ing.rejects[0]["reason"] == "conversation has no text"
