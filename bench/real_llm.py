"""The LLM stage against a real model: facets, names and their grounding vs keyphrase names.

Draws ``--rows`` rows from a shared labelled set (BailBench single prompts by default), stratified
by the label (``--per-label`` rows from each of the first labels with enough rows), runs
``bailclio run`` with the LLM stage against an OpenAI-compatible server, and reports:

- share of structured replies valid at the first attempt (facets and names);
- per facet: rows asked, distinct-answer ratio, share of the most common answer, copies rejected;
- share of LLM names grounded (first attempt, after the retry), names replaced;
- reconstruction: each member put back into the leaf whose name + description is nearest by the
  embedding model, for the LLM names and for the keyphrase names of the same clustering (the
  keyphrase description quotes a member, so it is also scored with its name and keywords only);
- calls, tokens, seconds per call; and a rerun of the same command, which must make no calls.

Then it checks the floors (no text facet >= 50 % one answer on single prompts, >= 80 % of LLM
names grounded and every ungrounded one replaced, LLM reconstruction >= keyphrase
reconstruction, no unhandled error, rerun with zero calls) and exits non-zero if one fails.

    python bench/real_llm.py --base-url http://127.0.0.1:18181/v1 --model qwen2.5-coder-1.5b \\
        --cache /tmp/real-llm.sqlite --json-out bench-real-llm.json [--hierarchy llm] \\
        [--set naming.revision=false --set naming.grounding_retry_samples=1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "bailbench": ("bailbench.csv", "content", "category"),
    "clinc150": ("clinc150.csv", "text", "intent"),
    "banking77": ("banking77.csv", "text", "category"),
    "wildchat": ("wildchat_1880.jsonl", "text", "topic"),
}


def data_dir() -> Path:
    for p in (ROOT.parent / "shared" / "data", ROOT / "data"):
        if p.is_dir():
            return p
    raise SystemExit("no data folder: ../shared/data or data/")


def draw(name: str, per_label: int, n_labels: int, seed: int) -> pl.DataFrame:
    """``per_label`` rows of each of the first ``n_labels`` labels with enough rows, in round-robin
    order; the rows of a label are a seeded permutation's prefix, so a smaller draw is a subset of
    a larger one."""
    fname, text, label = DATASETS[name]
    path = data_dir() / fname
    df = (pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_csv(path)).select(text, label)
    counts = dict(df[label].value_counts().iter_rows())
    labels = [x for x in df[label].unique(maintain_order=True).to_list() if counts[x] >= per_label][:n_labels]
    parts = [
        df.filter(pl.col(label) == x)
        .sample(fraction=1.0, shuffle=True, seed=seed)
        .head(per_label)
        .with_row_index("rank")
        .with_columns(pl.lit(k).alias("label_index"))
        for k, x in enumerate(labels)
    ]
    out = pl.concat(parts).sort("rank", "label_index").with_row_index("id")
    return out.select(
        pl.col("id").cast(pl.String), pl.col(text).alias("prompt"), pl.col(label).alias("label")
    )


def config(args: argparse.Namespace, cache: Path) -> Any:
    from bailclio.config import Config, load_config

    # The language facet is left out: on an English data set it is one answer by nature.
    facets = [f.model_dump() for f in Config().facets if f.name != "language"]
    return load_config(
        None,
        {
            "llm.backend": "openai",
            "llm.base_url": args.base_url,
            "llm.model": args.model,
            "llm.max_concurrency": 1,
            "llm.cache_path": str(cache),
            "cluster.min_cluster_size": args.min_cluster_size,
            "naming.hierarchy": args.hierarchy,
            "facets": facets,
            **dict(_setting(kv) for kv in args.set),
        },
    )


def _setting(kv: str) -> tuple[str, Any]:
    """``section.key=value`` from ``--set``; the value is read as JSON when it parses."""
    key, sep, value = kv.partition("=")
    if not sep or "." not in key:
        raise SystemExit(f"--set {kv!r}: give section.key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def node_texts(nodes: list[Any], kind: str) -> dict[str, str]:
    out = {}
    for n in nodes:
        if n.extra.get("is_outlier_node"):
            continue
        # A node whose LLM name was refused carries its keyphrase name and description as its own.
        own = n.extra.get("name_source") == "keyphrases"
        kp_name = n.extra.get("keyphrase_name") or n.name
        if kind == "final":
            out[n.id] = f"{n.name}. {n.description}"
        elif kind == "keyphrases":
            desc = n.extra.get("keyphrase_description") or (n.description if own else "")
            out[n.id] = f"{kp_name}. {desc}"
        else:  # keyphrase name and keywords, without the quoted member
            out[n.id] = f"{kp_name}: {', '.join(n.keywords)}"
    return out


def measure(run_dir: Path, cfg: Any) -> dict[str, Any]:
    from bailclio.embeddings.encoder import embed_texts
    from bailclio.llmnaming.grounder import Grounder, reconstruction_accuracy
    from bailclio.rundir import load_run

    r = load_run(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    vectors = np.load(run_dir / "embeddings.npy")
    leaf_ids = r.assignments["leaf_id"].to_list()
    leaves = r.taxonomy.level(r.taxonomy.depth - 1)
    index = {n.id: i for i, n in enumerate(leaves)}
    groups = np.array([index[x] for x in leaf_ids])

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.embedding, progress=False)[0]

    def recon(kind: str) -> float:
        texts = {index[k]: v for k, v in node_texts(leaves, kind).items()}
        return round(reconstruction_accuracy(vectors, groups, texts, embed), 4)

    grounder = Grounder(vectors, embed, siblings=cfg.naming.grounding_siblings)
    outliers = [index[n.id] for n in leaves if n.extra.get("is_outlier_node")]
    kp = grounder.check(
        groups, {index[k]: v for k, v in node_texts(leaves, "keyphrases").items()}, exclude=outliers
    )
    llm = manifest["llm"]
    st = llm["stages"]
    names = [n for n in r.taxonomy.nodes if n.extra.get("name_source") in ("llm", "keyphrases")]
    checked = [n for n in names if "grounded_first" in n.extra]
    calls = llm["total"]["calls"]
    wall = llm["total"]["wall_s"]
    return {
        "rows": manifest["counts"]["accepted"],
        "leaves": len(leaves),
        "nodes": len(r.taxonomy.nodes),
        "clustering": llm["clustering"],
        "facets_first_attempt_valid": st["facets"].get("first_attempt_valid"),
        "facets_replies": st["facets"]["requests"],
        "per_facet": {
            k: {
                kk: v.get(kk)
                for kk in ("asked_rows", "not_applicable_rows", "answered_rows", "rejected_rows", "quality")
            }
            for k, v in st["facets"]["per_facet"].items()
        },
        "names": {k: v for k, v in st.items() if k.startswith("names_")},
        "names_checked": len(checked),
        "names_grounded_first": sum(bool(n.extra.get("grounded_first")) for n in checked),
        "names_grounded_final_llm": sum(
            n.extra.get("name_source") == "llm" and bool(n.extra.get("grounded")) for n in checked
        ),
        "names_replaced": sum(
            n.extra.get("name_source") == "keyphrases" and "ungrounded" in (n.extra.get("name_error") or "")
            for n in checked
        ),
        "ungrounded_llm_names_kept": sum(
            n.extra.get("name_source") == "llm" and n.extra.get("grounded") is False for n in checked
        ),
        "keyphrase_leaves_grounded": sum(g.grounded for g in kp.values()),
        "reconstruction_llm": recon("final"),
        "reconstruction_keyphrases": recon("keyphrases"),
        "reconstruction_keyphrase_words": recon("keywords"),
        "calls": calls,
        "cache_hits": llm["total"]["cache_hits"],
        "failures": llm["total"]["failures"],
        "prompt_tokens": llm["total"]["prompt_tokens"],
        "completion_tokens": llm["total"]["completion_tokens"],
        "s_per_call": round(wall / calls, 1) if calls else None,
        "warnings": llm.get("warnings", []),
        "nodes_named": [
            {
                "id": n.id,
                "size": n.size,
                "name": n.name,
                "description": n.description,
                **{
                    k: n.extra.get(k)
                    for k in ("name_source", "name_error", "grounding_margin", "keyphrase_name", "revision")
                },
            }
            for n in r.taxonomy.nodes
        ],
    }


def floors(m: dict[str, Any], rerun_calls: int) -> list[tuple[str, bool]]:
    shares = {
        k: v["quality"]["top_share"]
        for k, v in m["per_facet"].items()
        if v.get("quality") and v["asked_rows"]
    }
    applicable = (
        m["clustering"]["clustered_on"] != "facet"
        or m["per_facet"][m["clustering"]["facet"]]["not_applicable_rows"] == 0
    )
    checked = max(m["names_checked"], 1)
    return [
        (f"no text facet >= 50% one answer {shares}", all(s < 0.5 for s in shares.values())),
        ("no node named from a facet that does not apply to its rows", applicable),
        (f">= 80% of LLM names grounded ({m['names_grounded_final_llm']} of {m['names_checked']})",
         (m["names_grounded_final_llm"] / checked) >= 0.8),
        ("every ungrounded name replaced and flagged", m["ungrounded_llm_names_kept"] == 0),
        (f"reconstruction LLM {m['reconstruction_llm']} >= keyphrases {m['reconstruction_keyphrases']}",
         m["reconstruction_llm"] >= m["reconstruction_keyphrases"]),
        (f"rerun makes zero calls ({rerun_calls})", rerun_calls == 0),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", choices=sorted(DATASETS), default="bailbench")
    ap.add_argument("--per-label", type=int, default=10)
    ap.add_argument("--labels", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-cluster-size", type=int, default=4)
    ap.add_argument(
        "--hierarchy",
        choices=["structural", "llm"],
        default="structural",
        help="[naming] hierarchy: levels above the leaves from the Ward tree, or built by the LLM",
    )
    ap.add_argument(
        "--cache", default=str(Path.home() / ".cache" / "bailclio" / "llm" / "real-llm-bench.sqlite")
    )
    ap.add_argument("--json-out")
    ap.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a config setting, e.g. naming.revision=false (repeatable)",
    )  # fmt: skip
    args = ap.parse_args()

    from bailclio.pipeline import run

    rows = draw(args.data, args.per_label, args.labels, args.seed)
    work = Path(tempfile.mkdtemp(prefix="real-llm-bench-"))
    inp = work / "rows.csv"
    rows.write_csv(inp)
    cfg = config(args, Path(args.cache))
    t0 = time.perf_counter()
    errors: list[str] = []
    try:
        run(inp, work / "run", cfg, force=True, progress=True)
        m = measure(work / "run", cfg)
        rerun = run(inp, work / "rerun", cfg, force=True, progress=False)
        rerun_calls = rerun.manifest["llm"]["total"]["calls"]
    except Exception as exc:  # reported as a failed floor, never hidden
        errors.append(f"{type(exc).__name__}: {exc}")
        raise
    m["wall_s"] = round(time.perf_counter() - t0, 1)
    m["rerun_calls"] = rerun_calls
    m["data"] = {"set": args.data, "rows": rows.height, "labels": rows["label"].unique().sort().to_list()}
    checks = floors(m, rerun_calls) + [("zero unhandled errors", not errors)]
    m["floors"] = [{"check": c, "ok": ok} for c, ok in checks]
    text = json.dumps(m, indent=1, ensure_ascii=False)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    for c, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {c}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
