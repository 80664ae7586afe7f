"""The static site in a real headless Chromium, opened from file://: no console errors, the tree
and a node's page, search, and hostile text that stays text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.browser import CHROMEDRIVER, CHROMIUM, chromium
from support.explorer_runs import SCRIPT_ID, SCRIPT_TEXT

from bailclio.cli import main as cli_main
from bailclio.rundir import load_run
from bailclio.taxonomy.curation import rename_node

HOSTILE_NAME = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path):
    with chromium(tmp_path / "chrome-profile", size=(1400, 1000), console_log=True) as driver:
        yield driver


def until(fn, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_site_opens_from_file_searches_and_keeps_hostile_text_inert(
    run_dir: Path, tmp_path: Path, browser
) -> None:
    from selenium.webdriver.common.by import By

    run = load_run(run_dir)
    top = max(run.taxonomy.roots, key=lambda n: n.size)
    rename_node(run, top.id, HOSTILE_NAME)
    script_leaf = run.assignments.filter(run.assignments["conversation_id"] == SCRIPT_ID)["leaf_id"][0]
    out = tmp_path / "site"
    assert cli_main(["export", str(run_dir), "--format", "site", "--out", str(out)]) == 0

    browser.get((out / "index.html").as_uri())
    links = until(lambda: browser.find_elements(By.CSS_SELECTOR, "#tree a.node-link"))
    assert len(links) == len(run.taxonomy.nodes)
    assert HOSTILE_NAME in [a.get_attribute("textContent") for a in links]

    # a node's page: its name, size and the per-model table
    leaf = run.taxonomy.by_id[script_leaf]
    browser.get((out / "index.html").as_uri() + "#node=" + leaf.id)
    detail = browser.find_element(By.ID, "detail")
    assert until(lambda: leaf.name in detail.text)
    assert f"{leaf.size:,}" in detail.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.model-table tr")) == 1 + 2

    # search finds the hostile conversation; its markup is shown as text
    box = browser.find_element(By.ID, "search")
    box.send_keys("onerror=alert")
    assert until(lambda: "Search: onerror=alert" in detail.text)
    texts = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "#detail .text")]
    assert any(SCRIPT_TEXT in t for t in texts)

    box.clear()
    box.send_keys("window.pwned")
    assert until(lambda: "Nodes (1)" in detail.text)

    # an address naming no node, or a malformed one, shows the hint
    for tail in ("#node=nope", "#node=%E0%A4%A"):
        browser.get((out / "index.html").as_uri() + tail)
        assert until(lambda: "Pick a node" in browser.find_element(By.ID, "detail").text)

    assert browser.execute_script("return window.pwned === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "script")) == 2
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
