"""``bailclio report``: the study's figures as one self-contained page and its numbers as CSV,
from detect folders measured against the scripted model (and a run of fixed structure)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.detect_model import simulated_model, write_jsonl
from support.scripted_server import ScriptedServer

from bailclio.cli import main

pytestmark = pytest.mark.timeout(240)

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">$x$ & \u00e9'
TEXTS = ["BAILME REFUSEME", "BAILME please", "STRINGME REFUSEME", "TOOLME", "REFUSEME", "hello", "hi"]


@pytest.fixture(scope="module")
def detect_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("report")
    rows = [{"id": f"c{i}", "conversation": [{"role": "user", "content": t}]} for i, t in enumerate(TEXTS)]
    src = write_jsonl(tmp / "in.jsonl", rows)
    outs = []
    with ScriptedServer(simulated_model) as srv:
        for name, model in (("qwen", "Qwen/Qwen2.5-7B-Instruct"), ("hostile", HOSTILE)):
            out = tmp / name
            argv = ["detect", str(src), "--model", model, "--base-url", srv.base_url, "--out", str(out)]
            assert main([*argv, "--no-progress"]) == 0
            outs.append(out)
    return outs


HOSTILE_CATEGORY = '<svg onload="window.pwned=3"></svg>Fraud $\\alpha$'


def model_run(fixed_runs: Any, dest: Path) -> Path:
    """The fixed 2-level run with a ``model`` column (even rows one model, odd rows the other) and
    a hostile name on its first top category."""
    shutil.copytree(fixed_runs.run(2), dest)
    tax = json.loads((dest / "taxonomy.json").read_text(encoding="utf-8"))
    next(n for n in tax["nodes"] if n["parent_id"] is None)["name"] = HOSTILE_CATEGORY
    (dest / "taxonomy.json").write_text(json.dumps(tax), encoding="utf-8")
    conv = pl.read_parquet(dest / "conversations.parquet")
    models = ["Qwen/Qwen2.5-7B-Instruct" if i % 2 == 0 else HOSTILE for i in range(conv.height)]
    conv.with_columns(pl.Series("model", models)).write_parquet(dest / "conversations.parquet")
    return dest


def test_the_csv_holds_every_rate_of_the_summaries(detect_dirs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, detect_dirs), "--out", str(out)]) == 0
    numbers = pl.read_csv(tmp_path / "report.csv")
    for d in detect_dirs:
        summary = json.loads((d / "summary.json").read_text())
        rates = numbers.filter((pl.col("section") == "rates") & (pl.col("source") == str(d)))
        for method, entry in summary["rates"].items():
            order = "both" if method == "prompt" else "-"
            got = rates.filter((pl.col("method") == method) & (pl.col("order") == order))
            bail = got.filter(pl.col("measure") == "bail").row(0, named=True)
            assert (bail["n"], bail["count"]) == (entry["n"], entry["bails"])
            for measure in ("refusal", "no_refusal_bail", "refusal_without_bail"):
                row = got.filter(pl.col("measure") == measure).row(0, named=True)
                assert (row["n"], row["count"]) == (entry[measure]["n"], entry[measure]["count"])
                assert row["ci_low"] <= row["rate"] <= row["ci_high"]
            for o, sub in (entry.get("orders") or {}).items():
                row = rates.filter((pl.col("order") == o) & (pl.col("measure") == "bail")).row(0, named=True)
                assert (row["n"], row["count"]) == (sub["n"], sub["bails"])
        # the refusal x bail cells add up to the scored turns
        cells = numbers.filter((pl.col("section") == "refusal_x_bail") & (pl.col("source") == str(d)))
        for method, entry in summary["rates"].items():
            assert cells.filter(pl.col("method") == method)["count"].sum() == entry["refusal"]["n"]


def test_the_page_is_self_contained_and_escapes_the_data(detect_dirs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, detect_dirs), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt;" in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page
    sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert sources and all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    assert not re.search(r"https?://", page.replace("http://www.w3.org", ""))


def test_with_a_run_each_model_gets_its_category_shares(
    detect_dirs: list[Path], tmp_path: Path, fixed_runs: Any
) -> None:
    run = model_run(fixed_runs, tmp_path / "run")
    out = tmp_path / "report.html"
    assert main(["report", *map(str, detect_dirs), "--run", str(run), "--out", str(out)]) == 0
    cats = pl.read_csv(tmp_path / "report.csv").filter(pl.col("section") == "categories")
    conv = pl.read_parquet(run / "conversations.parquet").join(
        pl.read_parquet(run / "assignments.parquet"), on="conversation_id"
    )
    tax = json.loads((run / "taxonomy.json").read_text())
    names = {n["id"]: n["name"] for n in tax["nodes"] if n["parent_id"] is None}
    for model in (HOSTILE, "Qwen/Qwen2.5-7B-Instruct"):
        mine = conv.filter(pl.col("model") == model)
        got = cats.filter(pl.col("model") == model)
        assert set(got["category"]) == set(names.values())
        assert (got["n"] == mine.height).all()
        for node_id, name in names.items():
            row = got.filter(pl.col("category") == name).row(0, named=True)
            assert row["count"] == mine.filter(pl.col("top_id") == node_id).height
            assert row["ci_low"] <= row["rate"] <= row["ci_high"]
    # whether the models differ in each category is compare's own test, on every model's row
    from bailclio.rundir import load_run
    from bailclio.taxonomy.compare import compare_groups

    result = compare_groups(load_run(run), "model", level=0)
    for node in result.nodes:
        rows = cats.filter(pl.col("category") == names[node.id])
        assert rows["models_differ"].to_list() == [node.significant] * rows.height
        assert rows["q"].to_list() == pytest.approx([node.q] * rows.height)
    page = out.read_text(encoding="utf-8")
    assert "Share of each top category per model" in page and "models differ" in page


def test_outputs_never_replace_an_input_or_a_non_file_and_links_are_written_through(
    detect_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = detect_dirs[0] / "summary.json"
    before = summary.read_bytes()
    (tmp_path / "adir.html").mkdir()
    cases = [
        (summary, "is the input"),
        (detect_dirs[0] / "llm_cache.sqlite", "detect output folder"),
        (tmp_path / "adir.html", "must be a regular file"),
        (tmp_path / "r.csv", "must not end in .csv"),
    ]
    for out, message in cases:
        assert main(["report", *map(str, detect_dirs), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], err
    assert summary.read_bytes() == before
    # a link stays a link, its target gets the page; a missing folder is created
    target = tmp_path / "target.html"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    assert main(["report", *map(str, detect_dirs), "--out", str(link)]) == 0
    assert link.is_symlink() and "Bails and refusals" in target.read_text(encoding="utf-8")
    assert main(["report", *map(str, detect_dirs), "--out", str(tmp_path / "new" / "r.html")]) == 0
    assert (tmp_path / "new" / "r.csv").is_file()


def test_a_folder_that_is_not_a_detect_output_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not a detect output folder" in err[-1]
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- in a real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
)
def test_the_report_opens_in_chromium_without_errors_and_hostile_text_stays_text(
    detect_dirs: list[Path], tmp_path: Path, fixed_runs: Any
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    run = model_run(fixed_runs, tmp_path / "run")
    out = tmp_path / "report.html"
    assert main(["report", *map(str, detect_dirs), "--run", str(run), "--out", str(out)]) == 0
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(out.as_uri())
        assert driver.execute_script("return window.pwned === undefined")
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 4
        assert all(driver.execute_script("return arguments[0].naturalWidth > 0", img) for img in images)
        cells = [td.text for td in driver.find_elements(By.TAG_NAME, "td")]
        assert HOSTILE in cells and HOSTILE_CATEGORY in cells  # shown as text, not markup
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert os.path.getsize(out) > 0
