#!/usr/bin/env bash
# The installed product, as a user gets it: build the wheel, install it into a fresh virtual
# environment next to the PyPI packages `taxonomy` and `embeddings` (whose import names a
# careless wheel would claim), then use it: `bailclio run` on a bundled sample, `bailclio explore`
# answering its health check on 127.0.0.1, `export` and `assign` from the run, the Python API; and
# finally import the other two packages and find them intact.
#
#   bash tests/wheel_check.sh            (PYTHON=python3.11, TORCH_SPEC=torch==2.13.0 to override)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
PYTHON=$(cd "$ROOT" && realpath -s "$(command -v "$PYTHON")")  # absolute: the checks run elsewhere
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PORT=${WHEEL_CHECK_PORT:-8763}
WORK=$(mktemp -d)
EXPLORE_PID=""
cleanup() {
  if [ -n "$EXPLORE_PID" ]; then kill "$EXPLORE_PID" 2>/dev/null || true; wait "$EXPLORE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "wheel check: $*"; }
fail() { echo "wheel check: FAILED: $*" >&2; exit 1; }

say "building the wheel"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null 2>&1 \
  || "$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/bailclio-*.whl)
# Only bailclio/ and its dist-info are installed: no clio, taxonomy, embeddings or explorer.
TOPS=$("$PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(sorted({n.split("/")[0] for n in names})))
EOF
)
for top in $TOPS; do
  case "$top" in bailclio|bailclio-*.dist-info) ;; *) fail "the wheel installs a top-level '$top'";; esac
done
"$PYTHON" - "$WHEEL" <<'EOF' || fail "the wheel lacks the explorer page or ships test machinery"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
assert "bailclio/explorer/app.py" in names, "bailclio/explorer/app.py missing"
for asset in ("site.js", "site.css"):
    assert f"bailclio/taxonomy/site_assets/{asset}" in names, f"the static site's {asset} is missing"
assert not any("scripted_server" in n for n in names), "the scripted test server is in the wheel"
# every package of the source tree is in the wheel (pyproject lists them one by one)
import pathlib
roots = {"clio": "bailclio", "taxonomy": "bailclio/taxonomy", "embeddings": "bailclio/embeddings",
         "explorer": "bailclio/explorer"}
for src, dest in roots.items():
    for init in pathlib.Path(src).rglob("__init__.py"):
        rel = init.relative_to(src).as_posix()
        assert f"{dest}/{rel}" in names, f"the package {init.parent} is not in the wheel (pyproject packages)"
EOF

say "installing it into a fresh venv with taxonomy and embeddings"
"$PYTHON" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
pip_install() { "$BIN/pip" install -q "$@" > "$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; fail "pip install $*"; }; }
pip_install "$TORCH_SPEC"
pip_install taxonomy embeddings
pip_install "$WHEEL"
# the other projects' files, before bailclio is used
"$BIN/python" - > "$WORK/before.txt" <<'EOF'
import importlib.metadata as md
for dist in ("taxonomy", "embeddings"):
    for f in md.distribution(dist).files or []:
        print(dist, f, f.hash.value if f.hash else "")
EOF

cd "$WORK"  # nothing from the source tree can be imported from here
export BAILCLIO_CACHE_DIR="$WORK/cache"
"$PYTHON" - "$ROOT/data/bailbench.csv" sample.csv new.csv <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
fields = list(rows[0])
with open(sys.argv[2], "w", newline="", encoding="utf-8") as fh:
    w = csv.DictWriter(fh, fields); w.writeheader(); w.writerows(rows[::6])      # ~270 rows
with open(sys.argv[3], "w", newline="", encoding="utf-8") as fh:
    w = csv.DictWriter(fh, fields); w.writeheader(); w.writerows(rows[3::40])    # ~40 new rows
EOF

say "bailclio run"
"$BIN/bailclio" run sample.csv --out run --quiet > run.txt || { cat run.txt; fail "bailclio run"; }
grep -q "accepted" run.txt || { cat run.txt; fail "run printed no summary"; }
[ -f run/manifest.json ] || fail "run wrote no manifest"

say "bailclio explore (health check on 127.0.0.1:$PORT)"
"$BIN/bailclio" explore run --port "$PORT" --host 127.0.0.1 > explore.log 2>&1 &
EXPLORE_PID=$!
ok=""
for _ in $(seq 1 90); do
  if "$BIN/python" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$PORT/_stcore/health', timeout=2).read().strip()==b'ok' else 1)" 2>/dev/null; then
    ok=1; break
  fi
  kill -0 "$EXPLORE_PID" 2>/dev/null || break
  sleep 1
done
[ -n "$ok" ] || { cat explore.log; fail "the explorer did not answer /_stcore/health"; }
"$BIN/python" -c "import urllib.request; assert b'<' in urllib.request.urlopen('http://127.0.0.1:$PORT/', timeout=5).read()" \
  || fail "the explorer page did not load"
kill "$EXPLORE_PID"; wait "$EXPLORE_PID" 2>/dev/null || true; EXPLORE_PID=""

say "bailclio export and assign"
"$BIN/bailclio" export run --format bailbench --out export.csv > /dev/null || fail "bailclio export"
[ "$(wc -l < export.csv)" -gt 100 ] || fail "export wrote too few rows"
"$BIN/bailclio" export run --format site --out site > /dev/null || fail "bailclio export --format site"
[ -s site/index.html ] && [ -s site/assets/site.js ] || fail "the static site lacks its page or script"
"$BIN/bailclio" assign run new.csv --out assigned.parquet --quiet > assign.txt || { cat assign.txt; fail "bailclio assign"; }

say "the Python API"
"$BIN/python" - <<'EOF' || fail "the Python API"
import polars as pl
from bailclio import Taxonomer
tx = Taxonomer.load("run", progress=False)
placed = tx.transform(pl.read_csv("new.csv"))
assigned = pl.read_parquet("assigned.parquet")
assert placed["leaf_id"].to_list() == assigned["leaf_id"].to_list()
EOF

say "taxonomy and embeddings are intact"
"$BIN/python" - > after.txt <<'EOF'
import importlib.metadata as md
for dist in ("taxonomy", "embeddings"):
    for f in md.distribution(dist).files or []:
        print(dist, f, f.hash.value if f.hash else "")
EOF
cmp -s "$WORK/before.txt" after.txt || fail "installing or using bailclio changed another package's files"
"$BIN/python" - <<'EOF' || fail "taxonomy or embeddings no longer import as themselves"
import importlib.metadata as md
import embeddings
import taxonomy
assert "site-packages/taxonomy" in taxonomy.__file__, taxonomy.__file__
assert "site-packages/embeddings" in embeddings.__file__, embeddings.__file__
assert hasattr(taxonomy, "Taxonomy"), dir(taxonomy)
assert hasattr(embeddings, "GloveEmbedding"), dir(embeddings)
import bailclio.taxonomy.model, bailclio.embeddings.encoder  # bailclio's own, under its name
print("taxonomy", md.version("taxonomy"), "and embeddings", md.version("embeddings"), "import as themselves")
EOF
say "passed"
