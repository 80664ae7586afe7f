"""Fitting on a sample and placing the rest (bailclio.scale), with the real model, UMAP and HDBSCAN.

The input is 3,000 CLINC150 requests, 300 from each of its 10 domains (travel, banking, kitchen,
...), plus rows that must be rejected; the run is fitted on 1,000 of them, stratified by domain, and
places the other 2,000.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bailclio.cli import main
from bailclio.config import Config
from bailclio.ingest import read_input
from bailclio.rundir import load_run
from bailclio.scale import choose_sample
from bailclio.stream import accepted_chunks, column_values, count_records, iter_records

ROOT = Path(__file__).resolve().parents[2]
CLINC = ROOT / "data" / "clinc150.csv"
PER_DOMAIN = 300
SAMPLE = 1000
BAD_ROWS = [("bad-empty", ""), ("bad-blank", "   ")]


@pytest.fixture(scope="session")
def clinc_input(tmp_path_factory) -> Path:
    data = pl.read_csv(CLINC).with_row_index("id").with_columns(pl.col("id").cast(pl.String))
    picked = pl.concat([g.head(PER_DOMAIN) for _, g in data.group_by("domain", maintain_order=True)])
    picked = picked.sample(fraction=1.0, shuffle=True, seed=3)
    bad = pl.DataFrame(
        {
            "id": [i for i, _ in BAD_ROWS],
            "text": [t for _, t in BAD_ROWS],
            "intent": ["none"] * len(BAD_ROWS),
            "domain": ["none"] * len(BAD_ROWS),
        }
    )
    frame = pl.concat([picked.head(1234), bad, picked.slice(1234)])
    path = tmp_path_factory.mktemp("scale") / "clinc3000.csv"
    frame.select("id", "text", "intent", "domain").write_csv(path)
    return path


def _sampled_cfg(chunk_rows: int) -> Config:
    return Config.model_validate(
        {"scale": {"fit_sample": SAMPLE, "stratify": "domain", "chunk_rows": chunk_rows}}
    )


@pytest.fixture(scope="session")
def sampled_runs(clinc_input, tmp_path_factory) -> dict[str, Path]:
    """The same sampled run twice, placing in chunks of 350 and of 5,000 rows (one chunk)."""
    root = tmp_path_factory.mktemp("scale-runs")
    small = root / "chunks-350"
    rc = main(
        ["run", str(clinc_input), "--out", str(small), "--sample", str(SAMPLE), "--stratify", "domain"]
        + ["--chunk-rows", "350", "--quiet"]
    )
    assert rc == 0
    from bailclio.pipeline import run

    whole = root / "one-chunk"
    run(clinc_input, whole, _sampled_cfg(5000), force=True, progress=False)
    return {"small": small, "whole": whole}


def _domain_by_id(path: Path) -> dict[str, str]:
    frame = pl.read_csv(path, schema_overrides={"id": pl.String})
    return dict(zip(frame["id"].to_list(), frame["domain"].to_list(), strict=True))


def _own_group_rate(leaves: list[str], groups: list[str], majority: dict[str, str]) -> float:
    return float(np.mean([majority.get(lf) == g for lf, g in zip(leaves, groups, strict=True)]))


def test_placed_rows_land_in_leaves_of_their_own_domain(sampled_runs, clinc_input):
    run = load_run(sampled_runs["small"])
    a = run.assignments.with_columns(
        pl.col("conversation_id").replace_strict(_domain_by_id(clinc_input)).alias("domain")
    )
    fitted, placed = a.filter(pl.col("fitted")), a.filter(~pl.col("fitted"))
    assert fitted.height + placed.height == PER_DOMAIN * 10
    assert SAMPLE - len(BAD_ROWS) <= fitted.height <= SAMPLE  # a drawn row may be rejected
    # each leaf's domain: the majority among the fitted rows the taxonomy was built on
    majority = {
        leaf: Counter(g["domain"].to_list()).most_common(1)[0][0] for (leaf,), g in fitted.group_by("leaf_id")
    }
    own = _own_group_rate(placed["leaf_id"].to_list(), placed["domain"].to_list(), majority)
    ceiling = _own_group_rate(fitted["leaf_id"].to_list(), fitted["domain"].to_list(), majority)
    shuffled = placed["domain"].to_list()
    random.Random(0).shuffle(shuffled)
    baseline = _own_group_rate(placed["leaf_id"].to_list(), shuffled, majority)
    assert own > baseline + 0.5, (own, baseline)
    assert own >= ceiling - 0.1, (own, ceiling)  # nearly as pure as the fitted rows themselves


def test_chunk_size_does_not_change_the_run(sampled_runs):
    a = load_run(sampled_runs["small"])
    b = load_run(sampled_runs["whole"])
    cols = ["conversation_id", "leaf_id", "top_id", "path", "is_outlier", "fitted"]
    assert a.assignments.select(cols).equals(b.assignments.select(cols))
    for col in ("x", "y", "outlier_score", "distance", "confidence"):
        np.testing.assert_allclose(
            a.assignments[col].to_numpy(), b.assignments[col].to_numpy(), rtol=1e-5, atol=1e-6
        )
    assert a.conversations.equals(b.conversations)
    np.testing.assert_array_equal(np.load(a.file("embeddings.npy")), np.load(b.file("embeddings.npy")))
    assert [n.to_dict() for n in a.taxonomy.nodes] == [n.to_dict() for n in b.taxonomy.nodes]


def test_manifest_counts_add_up(sampled_runs, clinc_input):
    path = sampled_runs["small"]
    run = load_run(path)
    m = run.manifest
    c, s = m["counts"], m["scale"]
    total = PER_DOMAIN * 10 + len(BAD_ROWS)
    assert c["rows_read"] == total and c["rejected"] == len(BAD_ROWS)
    assert (
        c["accepted"] == c["rows_read"] - c["rejected"] == run.assignments.height == run.conversations.height
    )
    assert c["fitted"] + c["placed"] == c["accepted"]
    assert c["fitted"] == s["fitted"] == int(run.assignments["fitted"].sum())
    assert c["outliers"] == int(run.assignments["is_outlier"].sum())
    assert s["placed_outliers"] <= c["placed"] and s["placed_beyond_threshold"] <= s["placed_outliers"]
    rejects = [json.loads(line) for line in (path / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == len(BAD_ROWS) and {r["field"] for r in rejects} == {"text"}
    # every level's sizes cover every row once
    for level in range(run.taxonomy.depth):
        assert sum(n.size for n in run.taxonomy.level(level)) == c["accepted"]
    leaf_sizes = Counter(run.assignments["leaf_id"].to_list())
    assert {n.id: n.size for n in run.taxonomy.leaves} == dict(leaf_sizes)
    # the stratified sample keeps each domain's share (the rejected rows' "none" is a stratum too)
    strata = dict(s["strata"])
    assert sum(strata.values()) == SAMPLE and c["fitted"] == SAMPLE - strata.pop("none", 0)
    share = SAMPLE * PER_DOMAIN / total
    assert len(strata) == 10 and all(abs(n - share) <= 1 for n in strata.values()), strata
    fitted_domains = Counter(run.conversations.filter(run.assignments["fitted"])["domain"].to_list())
    assert dict(fitted_domains) == strata
    # rows stay in input order, with every id once
    ids = read_input(clinc_input).frame["conversation_id"].to_list()
    assert run.assignments["conversation_id"].to_list() == ids


def test_commands_read_a_sampled_run_like_any_other(sampled_runs, clinc_input, tmp_path):
    path = sampled_runs["small"]
    new = tmp_path / "new.csv"
    held = pl.read_csv(clinc_input, schema_overrides={"id": pl.String}).head(50)
    held.with_columns(("new-" + pl.col("id")).alias("id")).write_csv(new)
    out = tmp_path / "placed.parquet"
    assert main(["assign", str(path), str(new), "--out", str(out), "--quiet"]) == 0
    placed = pl.read_parquet(out)
    run = load_run(path)
    # assign places against the fitted rows, as the run placed its own: a row the run placed
    # gets the same leaf again (unless it is beyond the distance threshold: unassigned)
    runs_rows = run.assignments.select("conversation_id", "fitted", pl.col("leaf_id").alias("run_leaf"))
    both = placed.with_columns(pl.col("conversation_id").str.strip_prefix("new-")).join(
        runs_rows, on="conversation_id"
    )
    again = both.filter(~pl.col("fitted") & ~pl.col("unassigned"))
    assert again.height >= 20
    assert again["leaf_id"].to_list() == again["run_leaf"].to_list()
    assert main(["export", str(path), "--format", "csv", "--out", str(tmp_path / "labels.csv")]) == 0
    assert pl.read_csv(tmp_path / "labels.csv").height == run.assignments.height
    assert main(["eval", str(path), "--truth", "domain", "--json"]) == 0


def test_small_inputs_are_fitted_whole(tmp_path, clinc_input):
    from bailclio.scale import sampling_plan

    cfg = Config.model_validate({"scale": {"fit_sample": 5000}})
    assert sampling_plan(clinc_input, cfg) is None
    assert sampling_plan(clinc_input, Config.model_validate({"scale": {"fit_sample": 0}})) is None
    plan = sampling_plan(clinc_input, _sampled_cfg(100))
    assert plan is not None and plan.size == SAMPLE and len(plan.indices) == SAMPLE


def test_the_sample_is_deterministic_and_keeps_strata_shares():
    strata = ["a"] * 700 + ["b"] * 290 + ["c"] * 10
    random.Random(1).shuffle(strata)
    idx, drawn = choose_sample(1000, 100, seed=5, strata=strata)
    again, _ = choose_sample(1000, 100, seed=5, strata=strata)
    other, _ = choose_sample(1000, 100, seed=6, strata=strata)
    assert np.array_equal(idx, again) and not np.array_equal(idx, other)
    assert len(idx) == 100 == len(set(idx.tolist())) and list(idx) == sorted(idx)
    assert drawn == {"a": 70, "b": 29, "c": 1}
    assert Counter(strata[i] for i in idx) == Counter(drawn)
    tiny, drawn = choose_sample(1000, 2, seed=0, strata=strata)  # fewer rows than strata
    assert len(tiny) == 2 and sum(drawn.values()) == 2
    plain, _ = choose_sample(50, 80, seed=0)
    assert list(plain) == list(range(50))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_streamed_chunks_match_read_input(tmp_path, suffix):
    rows = [
        {"id": "a", "text": "hello there", "model": "m1"},
        {"id": "b", "text": "", "model": "m1"},
        {"id": "c", "text": "a bail", "model": "m2", "bail_method": "tool"},
        {"id": "d", "text": "bad method", "model": "m2", "bail_method": "telepathy"},
    ] + [{"id": f"r{i}", "text": f"row number {i}", "model": "m3"} for i in range(20)]
    path = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps(r) for r in rows]
        lines.insert(3, "{not json")
        path.write_text("\n".join(lines) + "\n")
    elif suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        body = pl.DataFrame(rows).write_csv(separator=sep).encode()
        lines = body.split(b"\n")
        # a byte-order mark, a field spanning lines, a blank line, a row with too many fields,
        # and (TSV) a row with bad bytes: each read or rejected as the whole-file reader does
        lines[0] = b"\xef\xbb\xbf" + lines[0]
        if suffix == ".csv":
            lines.insert(2, b'q1,"two\nlines",m1,')
        else:
            lines.insert(6, sep.encode().join([b"x1", b"caf\xe9", b"m1", b""]))
        lines.insert(4, b"")
        lines.insert(8, sep.encode().join([b"x2", b"one", b"too", b"many", b"fields"]))
        path.write_bytes(b"\r\n".join(lines))
    else:
        pl.DataFrame(rows).write_parquet(path)
    whole = read_input(path)
    assert whole.frame.height >= 20 and len(whole.rejects) >= 2  # an empty bail_method is absent
    stats: dict[str, int] = {}
    chunks = list(accepted_chunks(path, chunk_rows=4, stats=stats))
    frame = pl.concat([c.frame for c in chunks if c.frame.height], how="diagonal_relaxed")
    assert frame.select(whole.frame.columns).equals(whole.frame)
    assert [r for c in chunks for r in c.rejects] == whole.rejects
    assert stats == {
        "rows_read": whole.rows_read,
        "accepted": whole.frame.height,
        "rejected": len(whole.rejects),
    }
    assert [c.first_row for c in chunks] == list(np.cumsum([0] + [c.frame.height for c in chunks])[:-1])
    records = list(iter_records(path))
    assert count_records(path) == len(records) == whole.rows_read
    assert column_values(path, "model") == [None if r is None else r.get("model") for _, r, _, _ in records]


# --------------------------------------------------------------------------- the Ray engine


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray instance with 2 CPUs for the session."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    import os
    import sys

    from bailclio.scale_ray import PASSED_ENV

    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for the crashing actor below
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_the_ray_engine_gives_the_local_engines_run(local_ray, sampled_runs, clinc_input, tmp_path):
    from bailclio.pipeline import run

    cfg = _sampled_cfg(350)
    cfg.scale.engine = "ray"
    cfg.scale.ray_batch_rows = 300
    result = run(clinc_input, tmp_path / "ray-run", cfg, force=True, progress=False)
    assert result.manifest["scale"]["engine"] == "ray"
    a, b = load_run(sampled_runs["small"]), load_run(result.path)
    cols = ["conversation_id", "leaf_id", "top_id", "path", "is_outlier", "fitted"]
    assert a.assignments.select(cols).equals(b.assignments.select(cols))
    np.testing.assert_array_equal(np.load(a.file("embeddings.npy")), np.load(b.file("embeddings.npy")))
    assert a.manifest["counts"] == b.manifest["counts"]


class CrashingOnce:
    """A RayPlacer whose process is killed (SIGKILL) in its second batch, once per ``marker`` file."""

    marker = ""

    def __init__(self, state):
        from bailclio.scale_ray import RayPlacer

        self.inner = RayPlacer(state)
        self.calls = 0

    def __call__(self, batch):
        import os
        import signal

        self.calls += 1
        marker = Path(self.marker)
        if self.calls == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(batch)


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_with_nothing_lost_or_duplicated(local_ray, sampled_runs, tmp_path):
    import pyarrow.parquet as pq

    from bailclio.placer import placer_state
    from bailclio.scale_ray import place_with_ray

    run = load_run(sampled_runs["small"])
    placed = run.assignments.with_row_index("row").filter(~pl.col("fitted"))
    texts = run.conversations["text"].to_list()
    todo = tmp_path / "todo"
    todo.mkdir()
    for i, part in enumerate(placed.iter_slices(500)):
        pl.DataFrame(
            {"row": part["row"].cast(pl.Int64), "text": [texts[r] for r in part["row"]]}
        ).write_parquet(todo / f"{i:03d}.parquet")
    cfg = _sampled_cfg(350)
    cfg.scale.ray_batch_rows = 200
    marker = tmp_path / "killed.pid"
    actor_cls = type("CrashingOncePlacer", (CrashingOnce,), {"marker": str(marker)})
    place_with_ray(todo, tmp_path / "out", placer_state(run.path), cfg, progress=False, actor_cls=actor_cls)
    assert marker.exists()  # a worker really was killed mid-run
    out = pl.concat(
        [
            pl.from_arrow(pq.read_table(p).drop_columns(["vector", "space"]))
            for p in (tmp_path / "out").rglob("*.parquet")
        ]
    )
    assert sorted(out["row"].to_list()) == sorted(placed["row"].to_list())  # each row once
    leaves = sorted(set(run.assignments.filter(pl.col("fitted"))["leaf_id"].to_list()))
    got = dict(zip(out["row"].to_list(), [leaves[i] for i in out["leaf"].to_list()], strict=True))
    assert [got[r] for r in placed["row"].to_list()] == placed["leaf_id"].to_list()
