"""``bailclio export RUNDIR --format site``: the files, the embedded data and where it may write."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from support.explorer_runs import SCRIPT_ID, SCRIPT_TEXT, strip_stability

from bailclio.cli import main as cli_main
from bailclio.rundir import load_run
from bailclio.taxonomy.curation import rename_node
from bailclio.taxonomy.site import SITE_MANIFEST, asset_text

HOSTILE_NAME = "</script><img src=x onerror=alert(1)> & <b>"


def site_json(out: Path) -> dict:
    page = (out / "index.html").read_text(encoding="utf-8")
    m = re.search(r'<script id="site-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "the data element is missing"
    return json.loads(m.group(1))


def export(run_dir: Path, out: Path, *extra: str) -> int:
    return cli_main(["export", str(run_dir), "--format", "site", "--out", str(out), *extra])


def test_site_holds_every_node_with_sizes_shares_and_texts(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    assert (out / "assets" / "site.js").is_file() and (out / "assets" / "site.css").is_file()
    assert json.loads((out / SITE_MANIFEST).read_text())["kind"] == "bailclio-site"
    data = site_json(out)
    run = load_run(run_dir)
    assert {n["id"] for n in data["nodes"]} == {n.id for n in run.taxonomy.nodes}
    assert data["run"]["rows"] == run.assignments.height
    assert sum(n["size"] for n in data["nodes"] if n["parent"] is None) == run.assignments.height
    texts = dict(zip(run.conversations["conversation_id"], run.conversations["text"], strict=True))
    for node in data["nodes"]:
        truth = run.taxonomy.by_id[node["id"]]
        assert (node["name"], node["size"]) == (truth.name, truth.size)
        assert node["share"] == pytest.approx(truth.size / run.assignments.height)
        assert node["exemplars"] or node["members"]
        for t in node["exemplars"] + node["members"]:
            assert texts[t["id"]].startswith(t["text"].rstrip("…"))
        shown = [t["id"] for t in node["exemplars"] + node["members"]]
        assert len(shown) == len(set(shown)), "a text is shown twice on one node"


def test_per_model_shares_come_with_intervals_that_hold_them(run_dir: Path, tmp_path: Path) -> None:
    strip_stability(run_dir)
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    data = site_json(out)
    run = load_run(run_dir)
    models = run.conversations["model"]
    assert data["models"] == sorted(models.unique().to_list())
    leaf_of = dict(zip(run.assignments["conversation_id"], run.assignments["leaf_id"], strict=True))
    for node in data["nodes"]:
        for model, iv in node["models"].items():
            assert iv["n"] == int((models == model).sum())
            assert iv["ci95"][0] <= iv["share"] <= iv["ci95"][1]
            if node["parent"] is not None and not any(n["parent"] == node["id"] for n in data["nodes"]):
                rows = run.conversations.filter(pl.col("model") == model)["conversation_id"]
                assert iv["count"] == sum(leaf_of[c] == node["id"] for c in rows)
    assert not data["has_refusal"] and not data["has_stability"]


def test_refusal_and_stability_appear_when_the_run_has_them(run_dir: Path, tmp_path: Path) -> None:
    conv = pl.read_parquet(run_dir / "conversations.parquet")
    refused = [i % 3 == 0 for i in range(conv.height)]
    conv.with_columns(pl.Series("refused", refused)).write_parquet(run_dir / "conversations.parquet")
    tax = json.loads((run_dir / "taxonomy.json").read_text())
    for i, node in enumerate(tax["nodes"]):
        node["stability"] = 0.2 if i == 0 else 0.9
    (run_dir / "taxonomy.json").write_text(json.dumps(tax))
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    data = site_json(out)
    assert data["has_refusal"] and data["has_stability"]
    unstable = [n["id"] for n in data["nodes"] if n["unstable"]]
    assert unstable == [tax["nodes"][0]["id"]]
    roots = [n for n in data["nodes"] if n["parent"] is None]
    assert sum(n["no_refusal"]["count"] for n in roots) == refused.count(False)
    assert sum(n["no_refusal"]["n"] for n in roots) == len(refused)


def test_hostile_text_cannot_leave_the_data_element(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    top = max(run.taxonomy.roots, key=lambda n: n.size)
    rename_node(run, top.id, HOSTILE_NAME)
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("</script>") == 2  # the data element's and the script tag's own
    assert "<img" not in page and "onerror=alert(1)>" not in page
    data = site_json(out)
    assert {n["id"]: n["name"] for n in data["nodes"]}[top.id] == HOSTILE_NAME
    texts = [t["text"] for n in data["nodes"] for t in n["exemplars"] + n["members"] if t["id"] == SCRIPT_ID]
    assert texts and all(SCRIPT_TEXT in t for t in texts)


def test_page_and_assets_request_nothing_and_never_parse_data_as_html(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src 'none'" in csp.group(1) and "connect-src 'none'" in csp.group(1)
    shell = re.sub(r'<script id="site-data".*?</script>', "", page, flags=re.S)
    script, style = asset_text("site.js"), asset_text("site.css")
    for text in (shell, script, style):
        assert not re.search(r"https?://|//cdn|@import|url\(", text)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script
    assert 'src="assets/site.js"' in page and 'href="assets/site.css"' in page


def test_folder_that_is_not_a_site_is_refused_unless_forced(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    assert export(run_dir, out) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]
    assert export(run_dir, out, "--force") == 0
    assert (out / "thesis.txt").read_text() == "years of work"
    assert (out / "index.html").is_file()


def test_a_previous_site_is_replaced_without_force(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert export(run_dir, out) == 0
    (out / "index.html").write_text("old")
    assert export(run_dir, out) == 0
    assert site_json(out)["nodes"]


@pytest.mark.parametrize("target", ["link", "run", "file", "index_link"])
def test_unsafe_destinations_are_refused_and_left_alone(
    run_dir: Path, tmp_path: Path, target: str, capsys
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    if target == "link":
        out = tmp_path / "link"
        out.symlink_to(real, target_is_directory=True)
    elif target == "run":
        out = run_dir
    elif target == "file":
        out = tmp_path / "file.html"
        out.write_text("mine")
    else:
        out = tmp_path / "site"
        assert export(run_dir, out) == 0
        (out / "index.html").unlink()
        (out / "index.html").symlink_to(real / "x.html")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert export(run_dir, out, "--force") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    if target == "link":
        assert out.is_symlink() and not any(real.iterdir())
    if target == "file":
        assert out.read_text() == "mine"


def test_table_options_are_refused_for_the_site(run_dir: Path, tmp_path: Path) -> None:
    assert export(run_dir, tmp_path / "site", "--level", "0") == 2
    assert not (tmp_path / "site").exists()
