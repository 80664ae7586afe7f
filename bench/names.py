"""Names without an LLM: name-only reconstruction of the default run's names against the keyword
lists they replace and BERTopic's KeyBERTInspired + MaximalMarginalRelevance labels, on the same
clusters, on four labelled sets; prints the floors.

    python bench/names.py [--datasets bailbench wildchat clinc150 banking77] [--seed 0]
                          [--work DIR] [--reuse] [--json OUT]

For each set, ``bailclio run`` builds the default taxonomy without an LLM (a fresh process, the
command's own numeric settings). Then, at every level, each row is put back into the node whose
*name alone* embeds nearest to it (:func:`bailclio.llmnaming.grounder.reconstruction_accuracy`, the run's
embedding model; no description), for three namings of the same nodes:

- ``phrases``: the run's own names (``taxonomy.json``);
- ``keywords``: the comma lists of the three best c-TF-IDF words that names were before
  (:func:`bailclio.naming.ctfidf_keywords` + :func:`bailclio.naming.name_from_keywords`);
- ``bertopic``: BERTopic (same embeddings, the run's groups given as ``y`` to an identity
  clusterer) with ``[KeyBERTInspired(), MaximalMarginalRelevance(diversity=0.3)]`` and English
  stop words, labelled with its three best words (``generate_topic_labels``).

Floors printed per set: no node name is a comma list of three or more single words; leaf
reconstruction >= 0.56 and top >= 0.50; and the phrases at least BERTopic's at the top and
the leaves. The exit status is 1 when a floor fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bailclio.config import EmbeddingConfig
from bailclio.embeddings.encoder import embed_texts, load_model
from bailclio.llmnaming.grounder import reconstruction_accuracy
from bailclio.naming import ctfidf_keywords, name_from_keywords
from bailclio.rundir import load_run, read_embeddings

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "bailbench": ROOT / "data" / "bailbench.csv",
    "wildchat": ROOT / "data" / "wildchat_1880.jsonl",
    "clinc150": ROOT / "data" / "clinc150.csv",
    "banking77": ROOT / "data" / "banking77.csv",
}
FLOOR_LEAF, FLOOR_TOP = 0.56, 0.50


def is_word_list(name: str) -> bool:
    """A comma list of three or more single words ("life, story, consent")."""
    parts = [p.strip() for p in re.sub(r"\s*\(\d+\)$", "", name).split(",")]
    return len(parts) >= 3 and all(len(p.split()) == 1 for p in parts)


def build(name: str, work: Path, seed: int, reuse: bool) -> tuple[Path, float]:
    out = work / name
    if reuse and (out / "manifest.json").exists():
        return out, 0.0
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "bailclio.cli", "run", str(DATASETS[name]), "--out", str(out)]
    subprocess.run([*cmd, "--seed", str(seed), "--force", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return out, time.perf_counter() - t0


def bertopic_labels(texts: list[str], vectors: np.ndarray, groups: np.ndarray, model) -> dict[int, str]:
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance
    from sklearn.feature_extraction.text import CountVectorizer

    topic_model = BERTopic(
        embedding_model=model,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=CountVectorizer(stop_words="english"),
        representation_model=[KeyBERTInspired(), MaximalMarginalRelevance(diversity=0.3)],
    )
    topic_model.fit(texts, vectors, y=groups)
    labels = topic_model.generate_topic_labels(nr_words=3, topic_prefix=False, separator=", ")
    info = topic_model.get_topic_info()
    by_topic = {int(t): lab for t, lab in zip(info["Topic"], labels, strict=True)}
    # BERTopic renumbers the topics by size: each group gets the label of its members' topic
    topics = np.asarray(topic_model.topics_)
    return {
        int(g): by_topic[int(np.bincount(topics[groups == g] + 1).argmax()) - 1] for g in set(groups.tolist())
    }


def score_set(name: str, rundir: Path) -> dict:
    run = load_run(rundir, curated=False)
    vectors = read_embeddings(run)
    texts = run.conversations["text"].to_list()
    cfg = EmbeddingConfig(**run.manifest["config"]["embedding"])

    def embed(batch: list[str]) -> np.ndarray:
        return embed_texts(batch, cfg, progress=False)[0]

    model = load_model(cfg.model, cfg.device, cfg.backend)
    by_id = {n.id: n for n in run.taxonomy.nodes}
    levels = []
    for level in range(run.depth):
        ids = run.level_ids(level)
        keys = sorted(set(ids))
        groups = np.array([keys.index(i) for i in ids])
        kws = ctfidf_keywords(texts, groups, 8, 2)
        taken: set[str] = set()
        namings = {
            "phrases": {k: by_id[i].name for k, i in enumerate(keys)},
            "keywords": {k: name_from_keywords(kws[k], taken) for k in sorted(kws)},
            "bertopic": bertopic_labels(texts, vectors, groups, model),
        }
        scores = {m: round(reconstruction_accuracy(vectors, groups, t, embed), 4) for m, t in namings.items()}
        examples = list(namings["phrases"].values())
        levels.append({"level": level, "nodes": len(keys), **scores, "examples": examples})
    lists = [n.name for n in run.taxonomy.nodes if is_word_list(n.name)]
    top, leaf = levels[0], levels[-1]
    floors = {
        "no comma word lists": not lists,
        f"leaf >= {FLOOR_LEAF}": leaf["phrases"] >= FLOOR_LEAF,
        f"top >= {FLOOR_TOP}": top["phrases"] >= FLOOR_TOP,
        "leaf >= BERTopic": leaf["phrases"] >= leaf["bertopic"],
        "top >= BERTopic": top["phrases"] >= top["bertopic"],
    }
    return {"set": name, "levels": levels, "word_lists": lists, "floors": floors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="where the runs are built (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="score the runs already in --work")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bailclio-names-"))
    results = []
    for name in args.datasets:
        rundir, seconds = build(name, work, args.seed, args.reuse)
        res = score_set(name, rundir)
        res["run_seconds"] = round(seconds, 1)
        results.append(res)
        print(f"\n{name} (run {seconds:.0f} s, {rundir})")
        print("| level | nodes | phrases | keywords | BERTopic KeyBERTInspired+MMR | phrases / BERTopic |")
        print("|---|---|---|---|---|---|")
        for lv in res["levels"]:
            ratio = lv["phrases"] / lv["bertopic"] if lv["bertopic"] else float("nan")
            print(
                f"| {lv['level']} | {lv['nodes']} | {lv['phrases']:.3f} | {lv['keywords']:.3f} "
                f"| {lv['bertopic']:.3f} | {ratio:.2f} |"
            )
        print("names (top level): " + "; ".join(res["levels"][0]["examples"][:8]))
        print("names (leaves):    " + "; ".join(res["levels"][-1]["examples"][:8]))
        for floor, ok in res["floors"].items():
            print(f"floor {floor}: {'holds' if ok else 'FAILS'}")
        if res["word_lists"]:
            print("comma word lists: " + "; ".join(res["word_lists"][:5]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    failed = [(r["set"], f) for r in results for f, ok in r["floors"].items() if not ok]
    print("\nall floors hold" if not failed else f"\nfloors failing: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
