"""ONNX Runtime and OpenVINO encoders for a local sentence-transformers model folder.

sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` load through ``optimum-onnx`` /
``optimum-intel``, which (optimum-onnx 0.1.0) require ``transformers<4.58`` while
sentence-transformers 6 requires ``transformers>=5``: the two cannot be installed together. This
module does the same job with the libraries themselves: the model's transformer is exported once
with ``torch.onnx.export`` (cached on disk under ``<cache>/onnx/<model hash>/``; ``-int8`` adds
onnxruntime's dynamic int8 quantisation of the weights), run by onnxruntime or OpenVINO, and
pooled and normalised as the folder's ``modules.json`` says (mean or CLS pooling, Normalize).

Back-ends: ``onnx``, ``onnx-int8`` (onnxruntime, CPU) and ``openvino``, ``openvino-int8``
(OpenVINO runtime over the same ONNX files). ``bench/embed_backends.py`` measures them against
the torch path.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bailclio.errors import UserError

BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _model_hash(model_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(model_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _pooling(model_dir: Path) -> tuple[str, bool, int]:
    """(pooling mode, normalise, max_seq_length) from the sentence-transformers folder."""
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    mode = "mean"
    for m in modules:
        if m["type"].endswith("Pooling"):
            cfg = json.loads((model_dir / m["path"] / "config.json").read_text())
            if cfg.get("pooling_mode_cls_token"):
                mode = "cls"
            elif not cfg.get("pooling_mode_mean_tokens", True):
                raise UserError(f"{model_dir}: only mean or CLS pooling is supported by the ONNX back-ends")
    unknown = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unknown:
        raise UserError(f"{model_dir}: module '{unknown[0]}' is not supported by the ONNX back-ends")
    sbert = model_dir / "sentence_bert_config.json"
    max_len = json.loads(sbert.read_text()).get("max_seq_length", 256) if sbert.exists() else 256
    return mode, "Normalize" in kinds, int(max_len)


def export(model_dir: str | Path, cache_root: Path, int8: bool = False) -> Path:
    """The model's transformer as ONNX (exported once, then read from ``cache_root``)."""
    model_dir = Path(model_dir)
    folder = cache_root / "onnx" / _model_hash(model_dir)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder.mkdir(parents=True, exist_ok=True)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir).eval()
        sample = tok(["an example sentence", "another"], return_tensors="pt", padding=True)
        names = [n for n in INPUTS if n in sample]
        dyn = {n: {0: "batch", 1: "sequence"} for n in names}
        dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
        tmp = folder / f"model.{os.getpid()}.onnx"

        class Wrapped(torch.nn.Module):  # positional inputs in INPUTS order, one output
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                return self.model(**dict(zip(names, args, strict=True))).last_hidden_state

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes, expected for a fixed graph
            torch.onnx.export(
                Wrapped(),
                tuple(sample[n] for n in names),
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=dyn,
                opset_version=17,
                dynamo=False,
            )
        tmp.replace(fp32)
    if not int8:
        return fp32
    q = folder / "model-int8.onnx"
    if not q.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f"model-int8.{os.getpid()}.onnx"
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(q)
    return q


class OnnxEncoder:
    """``encode(texts, batch_size, normalize)`` like SentenceTransformer's, on ONNX Runtime or
    OpenVINO."""

    def __init__(self, model_dir: str | Path, backend: str, cache_root: Path, threads: int = 0) -> None:
        if backend not in BACKENDS:
            raise UserError(f"unknown embedding back-end '{backend}' (use torch, {', '.join(BACKENDS)})")
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.backend = backend
        self.mode, self.normalize_output, self.max_len = _pooling(self.model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        path = export(self.model_dir, cache_root, int8=backend.endswith("int8"))
        self.path = path
        if backend.startswith("onnx"):
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise UserError(
                    "embedding back-end 'onnx' needs onnxruntime: pip install 'bailclio[onnx]'"
                ) from exc
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self.names = [i.name for i in self.session.get_inputs()]
            self._run = lambda feed: self.session.run(["last_hidden_state"], feed)[0]
        else:
            try:
                import openvino as ov
            except ImportError as exc:
                raise UserError(
                    "embedding back-end 'openvino' needs openvino: pip install 'bailclio[onnx]'"
                ) from exc
            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
            compiled = core.compile_model(str(path), "CPU", config)
            self.names = [i.get_any_name() for i in compiled.inputs]
            request = compiled.create_infer_request()
            self._run = lambda feed: np.asarray(request.infer(feed)[compiled.output(0)])

    def encode(self, texts: list[str], batch_size: int = 64, normalize: bool = True, **_: Any) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.empty((len(texts), 0), dtype=np.float32)
        parts: list[np.ndarray] = []
        for s in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[s : s + batch_size]]
            enc = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_len, return_tensors="np"
            )
            feed = {n: enc[n].astype(np.int64) for n in self.names if n in enc}
            for n in self.names:
                if n not in feed:  # e.g. token_type_ids for a tokenizer that does not return them
                    feed[n] = np.zeros_like(enc["input_ids"], dtype=np.int64)
            hidden = self._run(feed)
            if self.mode == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            parts.append(pooled.astype(np.float32))
        if parts:
            out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
            out[order] = np.concatenate(parts)
        if normalize or self.normalize_output:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.clip(norms, 1e-12, None)
        return out.astype(np.float32)
