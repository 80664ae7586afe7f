"""Inputs that would take unbounded memory or time, or stop a run on one bad line: each becomes a
reject that says why, or one line and exit status 2, quickly and with every other row kept."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from bailclio.cli import main
from bailclio.errors import UserError
from bailclio.ingest import read_input
from bailclio.readers import MAX_NESTING, iter_records

LIMIT = 4096  # a small record limit, so the tests stay small


def jsonl(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_line_over_the_record_limit_is_a_reject_that_names_the_limit(tmp_path: Path) -> None:
    huge = json.dumps({"id": "big", "text": "x" * (3 * LIMIT)})
    src = jsonl(tmp_path / "a.jsonl", ['{"id": 1, "text": "a"}', huge, '{"id": 2, "text": "b"}'])
    ing = read_input(src, max_record_bytes=LIMIT)
    assert ing.frame["conversation_id"].to_list() == ["1", "2"]
    assert [r["line"] for r in ing.rejects] == [2]
    assert str(LIMIT) in ing.rejects[0]["reason"] and "max_record_bytes" in ing.rejects[0]["reason"]
    assert len(ing.rejects[0]["raw"]) < LIMIT


def test_a_file_without_line_ends_is_read_in_blocks_not_whole(tmp_path: Path) -> None:
    src = tmp_path / "z.jsonl"
    with src.open("wb") as fh:
        fh.write(b'{"id": 1, "text": "first"}\n')
        fh.write(b"\0" * (8 * LIMIT))
    records = list(iter_records(src, LIMIT))
    assert records[0][1] == {"id": 1, "text": "first"}
    assert len(records) == 2 and records[1][1] is None and "longer than" in str(records[1][2])


def test_a_csv_record_over_the_limit_rejects_only_itself(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text(f"id,content\n1,short\n2,{'y' * (3 * LIMIT)}\n3,also short\n")
    ing = read_input(src, max_record_bytes=LIMIT)
    assert ing.frame["conversation_id"].to_list() == ["1", "3"]
    assert [r["line"] for r in ing.rejects] == [3]


def test_a_stray_quote_rejects_its_line_and_keeps_the_rows_after_it(tmp_path: Path) -> None:
    rows = [f"{i},row number {i}" for i in range(1, 51)]
    rows[2] = '3,"a stray quote that never ends'
    src = tmp_path / "q.csv"
    src.write_text("id,content\n" + "\n".join(rows) + "\n")
    ing = read_input(src)
    assert len(ing.rejects) == 1
    rej = ing.rejects[0]
    assert rej["line"] == 4 and "unmatched quote" in rej["reason"] and "lines 4-" in rej["reason"]
    assert ing.frame.height == 49 and "3" not in ing.frame["conversation_id"].to_list()
    assert ing.frame["source_line"].to_list() == [i + 1 for i in range(1, 51) if i != 3]


@pytest.mark.timeout(60)
def test_a_deeply_nested_line_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    deep = '{"id": 2, "text": "t", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    nested = {"id": 3, "text": "t", "meta": {}}
    node = nested["meta"]
    for _ in range(MAX_NESTING + 5):
        node["k"] = {}
        node = node["k"]
    src = jsonl(tmp_path / "n.jsonl", ['{"id": 1, "text": "ok"}', deep, json.dumps(nested)])
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["1"]
    assert [r["line"] for r in ing.rejects] == [2, 3]
    assert all("nested more than" in r["reason"] for r in ing.rejects)


def test_a_deeply_nested_json_document_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "n.json"
    src.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested"):
        read_input(src)


@pytest.mark.timeout(60)
def test_a_fifo_as_input_is_refused_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="FIFO"):
        read_input(fifo)
    assert main(["run", str(fifo), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "FIFO" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_device_as_input_is_refused() -> None:
    with pytest.raises(UserError, match="device"):
        read_input("/dev/zero")


def test_ten_thousand_columns_are_read_quickly(tmp_path: Path) -> None:
    cols = [f"c{i}" for i in range(10_000)]
    src = tmp_path / "wide.csv"
    lines = ["id,content," + ",".join(cols)]
    lines += [f"{r},text {r}," + ",".join(str(r) for _ in cols) for r in range(60)]
    src.write_text("\n".join(lines) + "\n")
    done: dict[str, object] = {}
    thread = threading.Thread(target=lambda: done.setdefault("ing", read_input(src)), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(60)  # a hang fails here; the time a slow machine takes is not asserted
    assert "ing" in done, f"still reading after {time.monotonic() - start:.0f}s"
    ing = done["ing"]
    assert (
        ing.frame.height == 60 and ing.frame.width == 10_000 + 5
    )  # + conversation_id, text, id, content, source_line


def test_nan_and_infinite_ids_are_rejected_not_called_duplicates(tmp_path: Path) -> None:
    src = tmp_path / "n.jsonl"
    src.write_text(
        '{"id": NaN, "text": "a"}\n{"id": NaN, "text": "b"}\n'
        '{"id": Infinity, "text": "c"}\n{"id": 4, "text": "d"}\n'
    )
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["4"]
    assert [r["line"] for r in ing.rejects] == [1, 2, 3]
    assert all(r["field"] == "id" and "not a number" in r["reason"] for r in ing.rejects)


INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u200e",
    "\u3164",
    "\u2800",
    "\u180e",
]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_a_text_of_invisible_characters_only_is_rejected_as_empty(tmp_path: Path, char: str) -> None:
    rows = [{"id": 1, "text": char * 3 + " "}, {"id": 2, "text": f"visible{char}text"}]
    rows.append({"id": 3, "conversation": [{"role": "user", "content": char * 2}]})
    src = tmp_path / "z.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    ing = read_input(src)
    assert ing.frame["conversation_id"].to_list() == ["2"]
    assert ing.rejects[0]["reason"] == "empty text"
    conv = tmp_path / "c.jsonl"
    conv.write_text(
        json.dumps(rows[2])
        + "\n"
        + json.dumps({"id": 4, "conversation": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    ing = read_input(conv)
    assert ing.frame["conversation_id"].to_list() == ["4"]
    assert ing.rejects[0]["reason"] == "conversation has no text"
