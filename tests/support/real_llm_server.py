"""A real instruction-tuned chat model served by llama.cpp for the tests marked ``real_llm``.

``../shared/tools/real-llm/setup.sh DIR`` installs it (``DIR/venv`` with the ``xllamacpp`` wheel,
``DIR/model.gguf``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M); ``serve.py MODEL PORT`` serves it with an
OpenAI-compatible API on 127.0.0.1, one request at a time. Where to find them:

- ``BAILCLIO_REAL_LLM_DIR``: the setup folder (default ``.real-llm`` in the repository);
- ``BAILCLIO_REAL_LLM_SERVE``: serve.py (default ``../shared/tools/real-llm/serve.py``);
- ``BAILCLIO_REAL_LLM_BASE_URL``: an already running server to use instead of starting one.

:func:`serve_real_llm` starts the server on a free port, waits until it answers, and stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("BAILCLIO_REAL_LLM_DIR", ROOT / ".real-llm"))
SERVE = Path(
    os.environ.get("BAILCLIO_REAL_LLM_SERVE", ROOT.parent / "shared" / "tools" / "real-llm" / "serve.py")
)
RUNNING = os.environ.get("BAILCLIO_REAL_LLM_BASE_URL", "")
PYTHON = MODEL_DIR / "venv" / "bin" / "python"
GGUF = MODEL_DIR / "model.gguf"


def missing() -> str | None:
    """Why the real model cannot be used here, or None."""
    if RUNNING:
        return None
    for path, what in ((GGUF, "the model"), (PYTHON, "its Python"), (SERVE, "serve.py")):
        if not path.exists():
            return (
                f"{path} is absent ({what}; set it up with `bash ../shared/tools/real-llm/setup.sh "
                f"{MODEL_DIR}` or set BAILCLIO_REAL_LLM_DIR)"
            )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_real_llm(log_dir: Path, start_timeout_s: float = 300) -> Iterator[str]:
    """The /v1 URL of the real model's server, started here and stopped on exit (or the running
    one named by BAILCLIO_REAL_LLM_BASE_URL)."""
    if RUNNING:
        yield RUNNING
        return
    port = _free_port()
    log = log_dir / "real-llm-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(PYTHON), str(SERVE), str(GGUF), str(port), "4096"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the real-LLM server exited ({proc.returncode}):\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{base}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the real-LLM server did not start in {start_timeout_s:.0f} s")
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        print(f"real-LLM server on port {port} stopped", file=sys.stderr)
