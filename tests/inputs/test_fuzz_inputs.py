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
from bailclio.readers import MAX_NESTING

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


# --------------------------------------------------------------------------- nesting, huge lines, odd ids

LIMIT = 2048  # a small record limit, so huge lines stay small files
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10))
JSON_VALUE = st.recursive(
    SCALAR,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=20,
)
ODD_ID = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.just(" "),
)


def deep(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def unique_ids(rows: list[dict]) -> list[dict]:
    """Odd ids, each at most once (a repeated id stops the read, which the other tests cover)."""
    seen: set[str] = set()
    out = []
    for i, row in enumerate(rows):
        key = json.dumps(row["id"])
        out.append(row if key not in seen else {**row, "id": f"u{i}"})
        seen.add(key)
    return out


@FUZZ
@given(
    rows=st.lists(st.fixed_dictionaries({"id": ODD_ID, "text": TEXT, "meta": JSON_VALUE}), max_size=10),
    depth=st.one_of(st.integers(1, 300), st.sampled_from([MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING])),
    huge=st.sampled_from([0, LIMIT - 200, LIMIT + 1, 4 * LIMIT]),
    ending=st.sampled_from(["\n", "\r\n", ""]),
)
def test_nesting_huge_lines_and_odd_ids_account_for_every_line(tmp_path_factory, rows, depth, huge, ending):
    rows = unique_ids(rows)
    lines = [json.dumps(r) for r in rows]
    lines.append(json.dumps({"id": "deep", "text": "t", "meta": deep(depth)}))
    if huge:
        lines.append(json.dumps({"id": "huge", "text": "x" * huge}))
    path = tmp_path_factory.mktemp("fuzz") / "in.jsonl"
    path.write_text("\n".join(lines) + ending, encoding="utf-8", errors="surrogatepass")
    try:
        ing = read_input(path, max_record_bytes=LIMIT)
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        return
    assert ing.rows_read == len(lines)
    assert ing.frame.height + len(ing.rejects) == len(lines)
    accepted = set(ing.frame["conversation_id"].to_list())
    assert ("deep" in accepted) == (depth + 1 <= MAX_NESTING)  # the record itself is one level
    assert ("huge" in accepted) == (0 < huge < LIMIT - 100)
    for rej in ing.rejects:
        assert str(rej["reason"]).strip() and len(str(rej.get("raw") or "")) <= 2000
