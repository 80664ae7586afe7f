#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install the gpu extra (RAPIDS cuML) and compare the GPU path
# (CUDA embeddings, cuML UMAP + HDBSCAN) with the CPU path on 100k rows of CLINC150 / Banking77 /
# BailBench texts repeated with perturbations; prints times and the AMI agreement. About 10 minutes.
#
#   bash bench/gpu_check.sh [ROWS]        (ROWS default 100000; PYTHON, VENV override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-100000}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv-gpu}"

command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi not found" >&2
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# torch from PyPI is the CUDA build on Linux x86_64; cuml-cu12 brings cupy and the CUDA libraries.
if ! "$VENV/bin/python" -c "import cuml, torch; assert torch.cuda.is_available()" 2>/dev/null; then
  "$VENV/bin/pip" install -q -e ".[gpu]" || { echo "could not install the gpu extra (cuml-cu12)" >&2; exit 1; }
fi
"$VENV/bin/python" - <<'PY'
import torch
from bailclio import gpu
print(f"torch {torch.__version__}, CUDA visible: {torch.cuda.is_available()}, cuML usable: {gpu.available()}")
if not (torch.cuda.is_available() and gpu.available()):
    raise SystemExit("no usable GPU: stopping")
PY
exec timeout 900 "$VENV/bin/python" bench/gpu_check.py --rows "$ROWS"
