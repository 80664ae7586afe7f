"""``bailclio explore [RUNDIR | RUNS_DIR ...]``: open the Streamlit explorer on 127.0.0.1.

The explorer only opens runs under the directories named here (its sidebar path box refuses
anything else). It binds to 127.0.0.1; serving it to the network takes ``--host ADDRESS
--allow-remote``, prints a warning, and requires a shared secret: ``--token-env VAR`` names an
environment variable holding it, else a random one is made and printed with the URL. Visitors open
``http://HOST:PORT/?token=SECRET`` or type it into the page.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from bailclio import explorer
from bailclio.errors import UserError
from bailclio.explorer import ROOTS_ENV, TOKEN_ENV


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="browse run directories in the Streamlit explorer",
        description="Serve the explorer (app.py) for run directories or folders of runs.",
    )
    p.add_argument(
        "path", nargs="*", default=["runs"], help="run directories or folders of runs (default: runs)"
    )
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (every conversation is then served to the network)",
    )
    p.add_argument("--token-env", help="environment variable holding the secret remote visitors must give")
    p.set_defaults(func=main)


def app_path() -> Path:
    """The explorer's Streamlit script, shipped inside the package (works from a wheel)."""
    return Path(explorer.__file__).resolve().parent / "app.py"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def command(paths: list[str] | str, port: int, host: str) -> list[str]:
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
        "--client.toolbarMode",  # a viewer's menu: no "Deploy" button, no developer options
        "viewer",
        "--",
        *([paths] if isinstance(paths, str) else paths),
    ]


def server_env(roots: list[Path], token: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env[ROOTS_ENV] = os.pathsep.join(str(r) for r in roots)
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    return env


def remote_token(args: argparse.Namespace) -> str:
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if len(token) < 12:
            raise UserError(
                f"--token-env {args.token_env}: the variable must hold a secret of 12+ characters"
            )
        return token
    return secrets.token_urlsafe(18)


def main(args: argparse.Namespace) -> int:
    from bailclio.rundir import MANIFEST, find_runs

    roots = []
    for path in args.path:
        target = Path(path)
        if not target.exists():
            raise UserError(f"{target}: no such run directory or folder")
        if not find_runs(target) and not (target / MANIFEST).exists():
            raise UserError(f"{target}: no bailclio run directories found (run `bailclio run INPUT` first)")
        roots.append(target.resolve())
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    token = None
    if not is_loopback(args.host):
        if not args.allow_remote:
            raise UserError(
                f"--host {args.host} would serve every conversation to the network; add --allow-remote "
                "to do so (a secret token is then required to open the page)"
            )
        token = remote_token(args)
        shown = "<the value of $" + args.token_env + ">" if args.token_env else token
        print(
            f"WARNING: the explorer is served on {args.host}:{args.port} to anyone who can reach it; "
            f"it asks for the token. Open http://{args.host}:{args.port}/?token={shown}",
            file=sys.stderr,
        )
    else:
        print(f"bailclio explorer: http://{args.host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    proc = subprocess.Popen(
        command([str(r) for r in roots], args.port, args.host), env=server_env(roots, token)
    )
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        return 0
