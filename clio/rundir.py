"""The run directory: the one contract between the pipeline, the explorer and the commands.

Only this module knows the file names. Layout::

    RUNDIR/
      manifest.json          config, versions, seed, input path + hash, counts, per-stage timings
      conversations.parquet  one row per accepted input row: conversation_id, text, [conversation],
                             source_line, every preserved input column
      assignments.parquet    conversation_id, leaf_id, top_id, path (root..leaf ids, any depth),
                             is_outlier, outlier_score, x, y (format 1 also had mid_id, dropped
                             on load; the node at any level is ``Run.level_ids(level)``)
      taxonomy.json          {"format_version", "levels", "nodes": [{id, parent_id, level, name,
                             description, size, keywords, exemplar_ids}, ...]}, level 0 = top
      embeddings.npy         float32 [n_rows, dim]: the vectors that were clustered, row-aligned
                             with conversations.parquet
      space.npy              float32 [n_rows, d]: the reduced clustering space (same rows)
      rejects.jsonl          rows that could not be used, with line, field and reason
      curation.json          (optional) edits made in the explorer, applied on load
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.taxonomy.edits import CurationError, apply_edits, check_log, log_document
from bailclio.taxonomy.model import READABLE_FORMAT_VERSIONS, Taxonomy, TaxonomyError, level_stems

MANIFEST = "manifest.json"
CONVERSATIONS = "conversations.parquet"
ASSIGNMENTS = "assignments.parquet"
TAXONOMY = "taxonomy.json"
EMBEDDINGS = "embeddings.npy"
SPACE = "space.npy"
REJECTS = "rejects.jsonl"
CURATION = "curation.json"
# the folder `bailclio detect` writes (its bails.parquet is an input for `bailclio run`)
DETECTIONS = "detections.parquet"
BAILS = "bails.parquet"
DETECT_SUMMARY = "summary.json"
LLM_CACHE = "llm_cache.sqlite"
COUNT_KEYS = ("rows_read", "rejected", "accepted")  # what every manifest's "counts" holds
REQUIRED = (MANIFEST, CONVERSATIONS, ASSIGNMENTS, TAXONOMY)
# every file a run directory may hold: its own, and what export and assign write into it by default
SITE = "site"  # `export --format site` writes its pages here by default
RUN_FILES = (*REQUIRED, EMBEDDINGS, SPACE, REJECTS, CURATION, SITE)
RUN_OUTPUT_PREFIXES = ("export-", "assign-")
DETECT_FILES = (DETECTIONS, BAILS, DETECT_SUMMARY, REJECTS, LLM_CACHE, f"{LLM_CACHE}-wal", f"{LLM_CACHE}-shm")
MAX_MANIFEST_BYTES = 64 << 20
ASSIGNMENT_COLUMNS = ("conversation_id", "leaf_id", "top_id", "path", "is_outlier", "x", "y")


def run_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest that makes ``path`` a run directory: a JSON object in ``manifest.json`` with a
    readable ``format_version`` and the counts every run records; None when there is none."""
    m = Path(path) / MANIFEST
    try:
        if not m.is_file() or m.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format_version") not in READABLE_FORMAT_VERSIONS:
        return None
    return data if isinstance(data.get("counts"), dict) else None


def is_run_dir(path: str | Path) -> bool:
    """A run directory is recognised by its manifest (and format version), never by one file
    name: a folder holding ``rejects.jsonl`` or ``taxonomy.json`` alone is not a run."""
    p = Path(path)
    return p.is_dir() and run_manifest(p) is not None and all((p / f).exists() for f in REQUIRED)


def is_detect_dir(path: str | Path) -> bool:
    """A ``bailclio detect`` output folder, recognised by its ``summary.json``."""
    s = Path(path) / DETECT_SUMMARY
    try:
        if not s.is_file() or s.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        data = json.loads(s.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("command") == "detect"


def foreign_files(path: Path, own: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> list[str]:
    """Names in ``path`` that no bailclio command writes there (hidden temporaries aside)."""
    return sorted(
        f.name for f in path.iterdir() if f.name not in own and not f.name.startswith((".", *prefixes))
    )


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory at or below ``root`` (newest first by manifest time)."""
    r = Path(root)
    if is_run_dir(r):
        return [r]
    runs = [p.parent for p in r.rglob(MANIFEST) if is_run_dir(p.parent)] if r.is_dir() else []
    return sorted(runs, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    conversations: pl.DataFrame
    assignments: pl.DataFrame
    taxonomy: Taxonomy

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def depth(self) -> int:
        return self.taxonomy.depth

    def level_ids(self, level: int) -> list[str | None]:
        """Each conversation's node id at ``level`` (0 = top), read from its ``path``; a path
        shorter than ``level`` gives its leaf."""
        if not 0 <= level < max(self.depth, 1):
            raise UserError(f"{self.path}: level {level} does not exist (levels 0..{self.depth - 1})")
        path = pl.col("path")
        at = pl.when(path.list.len() > level).then(path.list.get(level, null_on_oob=True))
        return self.assignments.select(at.otherwise(path.list.last()).alias("id"))["id"].to_list()


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such run directory")
    if not p.is_dir():
        raise UserError(f"{p}: not a directory (expected a run directory)")
    missing = [f for f in REQUIRED if not (p / f).exists()]
    if missing:
        raise UserError(f"{p}: not a bailclio run directory (missing {', '.join(missing)})")
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{p / MANIFEST}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p / MANIFEST}: cannot read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise UserError(f"{p / MANIFEST}: expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise UserError(
            f"{p}: run format version {version!r} is not supported by this bailclio "
            f"(reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}); "
            "rerun `bailclio run` to rebuild it"
        )
    counts = manifest.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(counts.get(k), int) for k in COUNT_KEYS):
        raise UserError(
            f"{p / MANIFEST}: 'counts' is missing or lacks {', '.join(COUNT_KEYS)}; "
            "rerun `bailclio run` to rebuild the run"
        )
    return manifest


def load_run(path: str | Path, *, curated: bool = True) -> Run:
    """Load and validate a run directory; ``curated`` applies ``curation.json`` when present."""
    p = Path(path)
    manifest = read_manifest(p)
    try:
        tax = Taxonomy.load(p / TAXONOMY)
    except TaxonomyError as exc:
        raise UserError(str(exc)) from exc
    try:
        conv = pl.read_parquet(p / CONVERSATIONS)
        assign = pl.read_parquet(p / ASSIGNMENTS)
    except Exception as exc:
        raise UserError(f"{p}: cannot read run tables: {exc}".splitlines()[0]) from exc
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in assign.columns]
    if missing:
        raise UserError(f"{p / ASSIGNMENTS}: missing column '{missing[0]}'")
    if "mid_id" in assign.columns:  # format 1: the middle of three levels, also in ``path``
        assign = assign.drop("mid_id")
    check_rows(p, conv, assign)
    check_paths(assign, tax, p / ASSIGNMENTS)
    run = Run(p, manifest, conv, assign, tax)
    if curated and (p / CURATION).exists():
        run = apply_edits(run, read_edits(p), str(p / CURATION))
    return run


def read_edits(run_dir: str | Path) -> list[dict[str, Any]]:
    """The curation edits recorded for a run directory (empty when there is no ``curation.json``)."""
    p = Path(run_dir) / CURATION
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CurationError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    return check_log(data, str(p))


def write_edits(run_dir: str | Path, edits: list[dict[str, Any]]) -> Path:
    """Replace the run's curation log with ``edits``."""
    p = Path(run_dir) / CURATION
    write_json(p, log_document(edits))
    return p


def check_rows(p: Path, conv: pl.DataFrame, assign: pl.DataFrame) -> None:
    """The run's tables agree: one assignment per conversation, the same ids (each once), and as
    many vectors as rows in ``embeddings.npy`` and ``space.npy``."""
    if "conversation_id" not in conv.columns:
        raise UserError(f"{p / CONVERSATIONS}: missing column 'conversation_id'")
    if conv.height != assign.height:
        raise UserError(
            f"{p}: {CONVERSATIONS} has {conv.height} rows but {ASSIGNMENTS} has {assign.height}; "
            "the run's files do not belong together (rerun `bailclio run`)"
        )
    ids = assign["conversation_id"]
    if ids.n_unique() != ids.len():
        dup = ids.filter(ids.is_duplicated()).first()
        raise UserError(f"{p / ASSIGNMENTS}: conversation_id '{dup}' appears more than once")
    known = set(conv["conversation_id"].cast(pl.String).to_list())
    missing = next((i for i in ids.cast(pl.String).to_list() if i not in known), None)
    if missing is not None:
        raise UserError(f"{p / ASSIGNMENTS}: conversation_id '{missing}' is not in {CONVERSATIONS}")
    for name in (EMBEDDINGS, SPACE):
        if not (p / name).exists():
            continue
        try:
            rows = np.load(p / name, mmap_mode="r").shape[0]  # the header only: no vectors are read
        except (OSError, ValueError, IndexError) as exc:
            raise UserError(f"{p / name}: cannot read: {exc}".splitlines()[0]) from exc
        if rows != assign.height:
            raise UserError(f"{p / name}: {rows} rows, but the run has {assign.height} conversations")


def check_paths(assign: pl.DataFrame, tax: Taxonomy, source: Path) -> None:
    """Every row's ``path`` is its leaf's path in the taxonomy, and ``top_id`` its first id."""
    pairs = assign.select("leaf_id", "top_id", "path").unique().rows()
    for leaf, top, path in pairs:
        if leaf not in tax.by_id:
            raise UserError(f"{source}: leaf_id '{leaf}' is not a node of the taxonomy")
        expected = [n.id for n in tax.path(leaf)]
        if list(path or []) != expected or top != expected[0]:
            raise UserError(
                f"{source}: leaf '{leaf}' has path {list(path or [])} and top_id '{top}', "
                f"but the taxonomy's path is {expected}"
            )


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def check_out_dir(out: str | Path, force: bool) -> Path:
    """Refuse ``out`` unless it is absent, empty, or (with ``force``) a run directory, or a
    folder holding only a failed run's ``rejects.jsonl``, which its replacement will take the
    place of. A run directory holding files bailclio did not write is refused too: ``--force``
    never deletes them. Nothing is changed."""
    p = atomic.through_link(Path(out))
    if p.exists() and not p.is_dir():
        raise UserError(f"{p}: exists and is not a directory")
    if not p.exists() or not any(p.iterdir()):
        return p
    if not force:
        raise UserError(f"{p}: output directory is not empty (use --force to replace a run directory)")
    if is_run_dir(p):
        extra = foreign_files(p, RUN_FILES, RUN_OUTPUT_PREFIXES)
        if extra:
            raise UserError(
                f"{p}: the run directory also holds {extra[0]!r}"
                + (f" and {len(extra) - 1} more files" if len(extra) > 1 else "")
                + " that bailclio did not write; refusing to replace it (nothing deleted)"
            )
        return p
    if not foreign_files(p, (REJECTS,)):
        return p
    what = "a detect output folder" if is_detect_dir(p) else "not a run directory (no bailclio manifest.json)"
    raise UserError(
        f"{p}: {what}; --force replaces only a run directory or an empty folder (nothing deleted)"
    )


@contextlib.contextmanager
def building(out: str | Path, force: bool) -> Iterator[Path]:
    """A staging directory beside ``out`` to write a run into; when the block completes it takes
    the place of ``out`` in one rename (the previous run there is deleted only then); when the
    block raises, or the process is killed, ``out`` is left as it was. What killed runs left
    beside ``out`` is removed first. ``out`` is locked for the block: a second writer is refused
    at once, and ``out`` is checked again just before the swap."""
    dest = atomic.through_link(Path(out))  # a link to a run directory is written through
    try:
        with atomic.locked(dest):
            check_out_dir(dest, force)
            atomic.remove_stale(dest)
            with atomic.replacing_dir(dest, before_swap=lambda: check_out_dir(dest, force)) as staging:
                yield staging
    except atomic.Busy as exc:
        raise UserError(
            f"{dest}: another bailclio process is writing there; try again when it is done"
        ) from exc
    except OSError as exc:  # a full disk, a read-only folder: the run cannot be written
        where = Path(exc.filename) if exc.filename is not None else None
        if where is None or where in (dest, dest.parent) or where.parent.name.startswith(f".{dest.name}."):
            raise UserError(f"{dest}: cannot write the run there: {atomic.os_error_text(exc)[1]}") from exc
        raise


def prepare_out_dir(out: str | Path, force: bool) -> Path:
    """An empty directory at ``out``: an existing run (or a folder holding only rejects) is
    replaced with ``force``; anything else is refused (:func:`check_out_dir`)."""
    p = check_out_dir(out, force)
    if p.exists() and any(p.iterdir()):
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


def assignments_table(
    taxonomy: Taxonomy,
    conversation_ids: Sequence[Any] | pl.Series,
    leaf_ids: Sequence[str | None],
    *,
    is_outlier: Any,
    x: Any,
    y: Any,
    outlier_score: Any = None,
    level_columns: bool = False,
    extra: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The assignments table, built one way for the pipeline, the sampled path and ``assign``:
    ``conversation_id``, ``leaf_id``, ``top_id`` (with ``level_columns``, ``level_<d>_id`` for
    each level between), ``path`` (root..leaf ids from the taxonomy), ``is_outlier``,
    ``outlier_score`` (when given), ``x``, ``y``, then ``extra``'s columns in order. A row whose
    leaf is None (not placed) has no top, levels or path."""
    paths: dict[str, list[str]] = {}
    for leaf in set(leaf_ids):
        if leaf is not None:
            paths[leaf] = [n.id for n in taxonomy.path(leaf)]
    row_paths = [None if leaf is None else paths[leaf] for leaf in leaf_ids]
    cols: dict[str, Any] = {
        "conversation_id": conversation_ids,
        "leaf_id": pl.Series(list(leaf_ids), dtype=pl.String),
        "top_id": pl.Series([None if p is None else p[0] for p in row_paths], dtype=pl.String),
    }
    if level_columns:
        stems = level_stems(taxonomy.depth)
        for lv in range(1, taxonomy.depth - 1):
            at = [None if p is None else p[min(lv, len(p) - 1)] for p in row_paths]
            cols[f"{stems[lv]}_id"] = pl.Series(at, dtype=pl.String)
    cols["path"] = pl.Series(row_paths, dtype=pl.List(pl.String))
    cols["is_outlier"] = pl.Series(np.asarray(is_outlier, dtype=bool))
    if outlier_score is not None:
        cols["outlier_score"] = pl.Series(np.asarray(outlier_score, dtype=np.float32))
    cols["x"] = pl.Series(np.asarray(x, dtype=np.float32))
    cols["y"] = pl.Series(np.asarray(y, dtype=np.float32))
    return pl.DataFrame({**cols, **(extra or {})})


def write_tables(
    out_dir: Path,
    *,
    conversations: pl.DataFrame,
    assignments: pl.DataFrame,
    taxonomy: Taxonomy,
    embeddings: np.ndarray,
    space: np.ndarray,
) -> None:
    """Everything of a run but its manifest (written last by :func:`write_manifest`)."""
    conversations.write_parquet(out_dir / CONVERSATIONS)
    assignments.write_parquet(out_dir / ASSIGNMENTS)
    taxonomy.save(out_dir / TAXONOMY)
    np.save(out_dir / EMBEDDINGS, embeddings)
    np.save(out_dir / SPACE, space)


class RunStream:
    """The streaming variant of :func:`write_tables`, for a run written block by block (the
    sampled path): the conversations from parts already on disk, the vectors into row-addressed
    arrays, the assignments appended in input order; the manifest last, by :func:`write_manifest`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._assignments: Any = None  # a pyarrow ParquetWriter once the first block arrives

    def write_conversations(self, parts: list[Path]) -> None:
        """The conversations table, joined from Parquet parts in input order."""
        scans = [pl.scan_parquet(p) for p in parts]
        pl.concat(scans, how="diagonal_relaxed").sink_parquet(self.out_dir / CONVERSATIONS)

    def conversation_ids(self, start: int, n: int) -> pl.Series:
        """The ids of conversations ``start`` to ``start + n``, read back from the written table."""
        scan = pl.scan_parquet(self.out_dir / CONVERSATIONS).select("conversation_id")
        return scan.slice(start, n).collect()["conversation_id"]

    def open_vectors(self, n_rows: int, dim: int, d_space: int) -> tuple[np.ndarray, np.ndarray]:
        """``embeddings.npy`` and ``space.npy`` as writable arrays on disk, one row per conversation."""
        emb = np.lib.format.open_memmap(
            self.out_dir / EMBEDDINGS, mode="w+", dtype=np.float32, shape=(n_rows, dim)
        )
        space = np.lib.format.open_memmap(
            self.out_dir / SPACE, mode="w+", dtype=np.float32, shape=(n_rows, d_space)
        )
        return emb, space

    def write_taxonomy(self, taxonomy: Taxonomy) -> None:
        taxonomy.save(self.out_dir / TAXONOMY)

    def add_assignments(self, block: pl.DataFrame) -> None:
        """The next rows of the assignments table (built by :func:`assignments_table`)."""
        import pyarrow.parquet as pq  # heavy; only the sampled path streams its assignments

        arrow = block.to_arrow()
        if self._assignments is None:
            self._assignments = pq.ParquetWriter(self.out_dir / ASSIGNMENTS, arrow.schema)
        schema = self._assignments.schema
        self._assignments.write_table(arrow.cast(schema) if arrow.schema != schema else arrow)

    def close(self) -> None:
        if self._assignments is not None:
            self._assignments.close()
            self._assignments = None

    def read_assignments(self) -> pl.DataFrame:
        return pl.read_parquet(self.out_dir / ASSIGNMENTS)

    def read_taxonomy(self) -> Taxonomy:
        return Taxonomy.load(self.out_dir / TAXONOMY)


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """The manifest, written last: a directory without it is never taken for a run."""
    write_json(out_dir / MANIFEST, manifest)


def write_rejects(out_dir: Path, rejects: list[dict[str, Any]]) -> Path:
    path = out_dir / REJECTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rej in rejects:
            fh.write(json.dumps(rej, ensure_ascii=False, default=str) + "\n")
    return path


def read_embeddings(run: Run) -> np.ndarray:
    """The run's row-aligned vectors (``embeddings.npy``)."""
    path = run.file(EMBEDDINGS)
    if not path.exists():
        raise UserError(f"{run.path}: {EMBEDDINGS} is missing; rerun `bailclio run` to rebuild it")
    return np.load(path)
