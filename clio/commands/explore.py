"""``bailclio explore [RUNDIR | RUNS_DIR]``: open the Streamlit explorer on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="browse run directories in the Streamlit explorer",
        description="Serve the explorer (app.py) for one run directory or a folder of runs.",
    )
    p.add_argument("path", nargs="?", default="runs", help="run directory or folder of runs (default: runs)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.set_defaults(func=main)


def app_path() -> Path:
    """The explorer's Streamlit script, shipped inside the package (works from a wheel)."""
    from bailclio import explorer

    return Path(explorer.__file__).resolve().parent / "app.py"


def command(path: str, port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--",
        path,
    ]


def main(args: argparse.Namespace) -> int:
    from bailclio.errors import UserError
    from bailclio.rundir import MANIFEST, find_runs

    target = Path(args.path)
    if not target.exists():
        raise UserError(f"{target}: no such run directory or folder")
    if not find_runs(target) and not (target / MANIFEST).exists():
        raise UserError(f"{target}: no bailclio run directories found (run `bailclio run INPUT` first)")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    print(f"bailclio explorer: http://{args.host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    proc = subprocess.Popen(command(str(target.resolve()), args.port, args.host))
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        return 0
