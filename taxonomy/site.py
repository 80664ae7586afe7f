"""``bailclio export RUNDIR --format site --out DIR``: the taxonomy as a static site.

The folder holds ``index.html`` (the data embedded as JSON in a ``<script type="application/json">``
element, every ``<``, ``>`` and ``&`` escaped), ``assets/site.js`` and ``assets/site.css`` (shipped
with the package) and :data:`SITE_MANIFEST`. It opens from ``file://`` with no server; a Content
Security Policy lets the page load its own script and style and nothing else, and the script
renders every text with ``textContent``, never as HTML.

Where it writes: a new or empty folder, or a folder that holds a previous site export. Any other
non-empty folder is refused unless ``force`` (the site's files are then written into it and
nothing else there is touched). A symbolic link is never replaced, a run directory is never
written into, and files are renamed into place only once all of them are written.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.rundir import is_run_dir
from bailclio.taxonomy.site_data import MEMBERS_PER_NODE, SITE_FORMAT_VERSION, site_data

if TYPE_CHECKING:
    from bailclio.rundir import Run

SITE_MANIFEST = "bailclio-site.json"
ASSETS = ("site.js", "site.css")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'none'; connect-src 'none'; "
    "font-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; base-uri 'none'; "
    "form-action 'none'"
)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


@dataclass
class SiteResult:
    out: Path
    nodes: int
    texts: int
    into_existing: bool


def embedded_json(data: Any) -> str:
    """``data`` as JSON that cannot end the ``<script>`` element it sits in."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return "".join(_JSON_ESCAPES.get(ch, ch) for ch in text)


def render_index(data: dict[str, Any]) -> str:
    """The page: the frame the script fills in, and the data."""
    title = html.escape(f"{data['run']['name']} — bailclio taxonomy")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="assets/site.css">
</head>
<body>
<header>
<h1 id="title">{title}</h1>
<p id="summary"></p>
<input id="search" type="search" placeholder="Search names, descriptions, keywords and texts"
 aria-label="Search" autocomplete="off">
</header>
<main>
<nav id="tree" aria-label="Taxonomy"></nav>
<section id="detail" aria-live="polite"></section>
</main>
<noscript>This page needs JavaScript to show the taxonomy.</noscript>
<script id="site-data" type="application/json">{embedded_json(data)}</script>
<script src="assets/site.js"></script>
</body>
</html>
"""


def asset_text(name: str) -> str:
    return resources.files("bailclio.taxonomy").joinpath("site_assets", name).read_text(encoding="utf-8")


def _is_site(path: Path) -> bool:
    try:
        meta = json.loads((path / SITE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == "bailclio-site"


def check_site_out(out: Path, run_path: Path, force: bool) -> bool:
    """Refuse an unsafe destination (a :class:`UserError` naming it); True when ``out`` is an
    existing folder the files go into, False when it does not exist yet."""
    if out.is_symlink():
        raise UserError(f"{out}: is a symbolic link; give the folder itself (a link is never replaced)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; the site needs a folder (--out DIR)")
    real = out.resolve()
    if real == run_path.resolve() or is_run_dir(real):
        raise UserError(f"{out}: is a run directory; write the site to another folder (e.g. {out}/site)")
    if not out.exists():
        return False
    for name in ("index.html", SITE_MANIFEST, "assets", *(f"assets/{a}" for a in ASSETS)):
        target = out / name
        if target.is_symlink():
            raise UserError(f"{target}: is a symbolic link; the site never replaces a link")
    if (out / "assets").exists() and not (out / "assets").is_dir():
        raise UserError(f"{out / 'assets'}: exists and is not a folder")
    if any(out.iterdir()) and not _is_site(out) and not force:
        raise UserError(
            f"{out}: folder is not empty and holds no previous site export; choose an empty folder, "
            "or add --force to write the site's files into it (nothing else there is touched)"
        )
    return True


def _files(data: dict[str, Any], run: Run) -> dict[str, str]:
    manifest = {
        "kind": "bailclio-site",
        "format_version": SITE_FORMAT_VERSION,
        "run": str(run.path.resolve()),
        "run_created": data["run"]["created"],
        "exported": data["run"]["exported"],
        "nodes": len(data["nodes"]),
        "rows": data["run"]["rows"],
        "members_per_node": MEMBERS_PER_NODE,
        "files": ["index.html", *(f"assets/{a}" for a in ASSETS)],
    }
    files = {f"assets/{a}": asset_text(a) for a in ASSETS}
    files["index.html"] = render_index(data)
    files[SITE_MANIFEST] = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"  # last: marks it whole
    return files


def write_site(
    run: Run, out: str | Path, *, force: bool = False, members: int = MEMBERS_PER_NODE
) -> SiteResult:
    """Write the static site of ``run`` to the folder ``out`` (see the module docstring)."""
    dest = Path(out)
    existing = check_site_out(dest, run.path, force)
    data = site_data(run, members=members)
    files = _files(data, run)
    texts = sum(len(n["exemplars"]) + len(n["members"]) for n in data["nodes"])
    if existing:
        (dest / "assets").mkdir(exist_ok=True)
        atomic.write_files(
            {
                dest / name: (lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"))
                for name, text in files.items()
            }
        )
    else:
        with atomic.replacing_dir(dest) as staging:
            (staging / "assets").mkdir()
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
    return SiteResult(out=dest, nodes=len(data["nodes"]), texts=texts, into_existing=existing)
