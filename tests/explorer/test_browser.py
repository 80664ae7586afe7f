"""The explorer in a real headless Chromium: tree, map, a node and a conversation, end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.browser import CHROMEDRIVER, CHROMIUM, chromium
from support.explorer_runs import SCRIPT_TEXT, copy_run, transcript_run

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path):
    run_dir = copy_run(transcript_run(tmp_path_factory.getbasetemp()), tmp_path / "run")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bailclio.cli", "explore", str(run_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"explorer did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield url, run_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser(tmp_path: Path):
    with chromium(tmp_path / "chrome-profile", size=(1500, 1100)) as driver:
        yield driver


def wait_for(driver, css: str, text: str | None = None, timeout: float = 45):
    """The first element matching ``css`` (and containing ``text``) once the page has rendered it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                if el.is_displayed() and (text is None or text in el.text):
                    return el
        except StaleElementReferenceException:
            pass
        time.sleep(0.25)
    raise AssertionError(f"no visible {css!r} containing {text!r} within {timeout}s")


def click_until(driver, css: str, text: str, then_css: str, then_text: str | None = None, tries: int = 3):
    """Click the element (``css``, ``text``) and wait for the page's answer (``then_css``,
    ``then_text``). A click that lands while Streamlit re-renders the page is lost with the old
    element, so the element is found and clicked again, ``tries`` times in all."""
    for attempt in range(tries):
        wait_for(driver, css, text).click()
        try:
            return wait_for(driver, then_css, then_text, timeout=20)
        except AssertionError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def test_tree_map_node_and_conversation_in_chromium(server, browser) -> None:
    from bailclio.rundir import load_run

    url, run_dir = server
    run = load_run(run_dir)
    top = max(run.taxonomy.roots, key=lambda n: n.size)
    leaf = max(run.taxonomy.leaf_ids_under(top.id), key=lambda i: run.taxonomy.by_id[i].size)
    leaf_node = run.taxonomy.by_id[leaf]

    browser.get(url)
    # the tree (expanders with sizes) and the sunburst render over the websocket
    expander = wait_for(browser, '[data-testid="stExpander"]', f"{top.size:,} (")
    wait_for(browser, ".js-plotly-plot .sunburstlayer")
    # a viewer's toolbar: no "Deploy" button
    assert not browser.find_elements("css selector", '[data-testid="stAppDeployButton"]')
    assert "Deploy" not in [b.text.strip() for b in browser.find_elements("css selector", "header button")]
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "explorer-taxonomy.png"))

    # open the top category and click its largest leaf: the node view opens
    expander.find_element("css selector", "summary").click()
    click_until(browser, "button", f"[{leaf}]", '[data-testid="stMetricValue"]', f"{leaf_node.size:,}")
    wait_for(browser, '[data-testid="stText"]', leaf_node.description[:40])

    # open a member conversation: transcript with roles and the bail turn marked
    click_until(browser, "button", "open conv-", '[data-testid="stChatMessage"]')
    wait_for(browser, '[data-testid="stAlert"]', "Bail turn")

    # hostile markup is shown as text
    box = wait_for(browser, 'input[aria-label="Conversation id"]')
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("conv-script", Keys.ENTER)
    wait_for(browser, '[data-testid="stText"]', "<script>alert('x')</script>")
    assert SCRIPT_TEXT in browser.find_element("tag name", "body").text
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0

    # the map draws with WebGL
    canvas = ".js-plotly-plot .gl-container canvas, .js-plotly-plot canvas"
    click_until(browser, '[data-testid="stRadio"] label', "Map", canvas)
    browser.save_screenshot(str(ARTIFACTS / "explorer-map.png"))
