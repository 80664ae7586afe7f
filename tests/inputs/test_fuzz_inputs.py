"""Property-based inputs: random JSONL / CSV / TSV / Parquet files from a grammar of valid and
broken rows. Whatever the file, reading it either gives one clear error or accounts for every row
(accepted + rejected = rows read, every reject with a reason), and reading it again gives the
same result; ``bailclio run`` on such a file exits 0 or prints one line with a non-zero status.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bailclio.errors import UserError
from bailclio.ingest import read_input

WORDS = st.sampled_from(["help", "me", "write", "a", "story", "about", "cats", "why", "no", "bye", "ok"])
PLAIN = st.lists(WORDS, min_size=1, max_size=8).map(" ".join)
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\x00 \x00",
        "\u200b",
        'say "hi"',
        "a,b,c",
        "tab\there",
        "two\nlines",
        "\ufeffbom",
        "é ü 漢字",
    ]
)
TEXT = st.one_of(PLAIN, ODD_TEXT, st.text(max_size=30))
TURN = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", "robot", ""]),
        "content": st.one_of(
            TEXT,
            st.lists(
                st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": TEXT}),
                max_size=3,
            ),
            st.none(),
            st.integers(),
        ),
    }
)
ROW = st.one_of(
    st.fixed_dictionaries({"id": st.integers(0, 10**6), "text": TEXT}),
    st.fixed_dictionaries(
        {"id": st.integers(0, 10**6), "text": st.one_of(st.none(), st.integers(), st.booleans())}
    ),
    st.fixed_dictionaries({"id": st.integers(0, 10**6), "conversation": st.lists(TURN, max_size=4)}),
    st.fixed_dictionaries({"id": st.integers(0, 10**6), "other": TEXT}),
)
BROKEN_JSONL_LINES = st.sampled_from(
    [b"{not json", b'{"id": 1, "text": "lone \\ud800 x"}', b"[1, 2]", b'"just a string"', b"\xff\xfe bytes"]
)


def jsonl_bytes(rows: list, broken: list[bytes]) -> tuple[bytes, int]:
    lines = [json.dumps(r).encode() for r in rows] + broken
    return b"".join(line + b"\n" for line in lines), len(lines)


def delimited_bytes(rows: list, sep: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep) if sep == "," else None
    header = ["id", "text"]
    if writer:
        writer.writerow(header)
        for r in rows:
            writer.writerow([r.get("id"), r.get("text", r.get("other", ""))])
    else:
        out.write("\t".join(header) + "\n")
        for r in rows:
            out.write(f"{r.get('id')}\t{r.get('text', r.get('other', ''))}\n")
    return out.getvalue().encode("utf-8", errors="surrogatepass")


def read_or_error(path: Path):
    try:
        return read_input(path), None
    except UserError as exc:
        return None, str(exc)


def check(path: Path, expected_rows: int | None) -> None:
    ing, err = read_or_error(path)
    if err is not None:
        assert err.strip() and "\n" not in err.strip(), err
        assert read_or_error(path)[1] == err
        return
    assert ing.frame.height + len(ing.rejects) == ing.rows_read
    if expected_rows is not None:
        assert ing.rows_read == expected_rows
    for rej in ing.rejects:
        assert str(rej.get("reason") or "").strip(), rej
    again, _ = read_or_error(path)
    assert again is not None and again.frame.equals(ing.frame)
    assert again.rejects == ing.rejects


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)


@FUZZ
@given(rows=st.lists(ROW, max_size=12), broken=st.lists(BROKEN_JSONL_LINES, max_size=3))
def test_random_jsonl_files_account_for_every_line(tmp_path_factory, rows, broken):
    data, n = jsonl_bytes(rows, broken)
    path = tmp_path_factory.mktemp("fuzz") / "in.jsonl"
    path.write_bytes(data)
    check(path, n)


@FUZZ
@given(rows=st.lists(ROW, max_size=12), sep=st.sampled_from([",", "\t"]), bad_byte=st.booleans())
def test_random_csv_and_tsv_files_account_for_every_record(tmp_path_factory, rows, sep, bad_byte):
    data = delimited_bytes(rows, sep)
    if bad_byte and rows:
        data = data.replace(b"\n", b"\xff\n", 2)
    path = tmp_path_factory.mktemp("fuzz") / ("in.csv" if sep == "," else "in.tsv")
    path.write_bytes(data)
    check(path, None)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    rows=st.lists(st.fixed_dictionaries({"id": st.integers(0, 10**6), "text": TEXT}), min_size=1, max_size=12)
)
def test_random_parquet_files_account_for_every_row(tmp_path_factory, rows):
    clean = [{"id": r["id"], "text": r["text"].encode("utf-8", "replace").decode("utf-8")} for r in rows]
    path = tmp_path_factory.mktemp("fuzz") / "in.parquet"
    pl.DataFrame(clean).write_parquet(path)
    check(path, len(clean))


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
@given(rows=st.lists(ROW, min_size=0, max_size=8), broken=st.lists(BROKEN_JSONL_LINES, max_size=2))
@pytest.mark.timeout(300)
def test_run_on_random_files_exits_cleanly_or_says_why_in_one_line(tmp_path_factory, rows, broken):
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("fuzzrun")
    data, _ = jsonl_bytes(rows, broken)
    (work / "in.jsonl").write_bytes(data)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bailclio.cli",
            "run",
            str(work / "in.jsonl"),
            "--out",
            str(work / "run"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        manifest = json.loads((work / "run" / "manifest.json").read_text())
        c = manifest["counts"]
        assert c["accepted"] + c["rejected"] == c["rows_read"]
    else:
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[bailclio]")]
        assert len(lines) == 1, proc.stderr
