"""Who may see what: the folders the explorer may open runs under, and the access token."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import streamlit as st

from bailclio.explorer import ROOTS_ENV, TOKEN_ENV


def allowed_roots(argv: list[str]) -> list[Path]:
    """The directories this page may open runs under: those ``bailclio explore`` was given."""
    from streamlit import runtime

    env = os.environ.get(ROOTS_ENV)
    if env:
        return [Path(p).resolve() for p in env.split(os.pathsep) if p]
    if argv and runtime.exists():
        return [Path(a).resolve() for a in argv]
    return [Path(os.environ.get("BAILCLIO_RUNS", "runs")).resolve()]


def is_allowed(path: Path, roots: list[Path]) -> bool:
    """``path`` (symlinks and ``..`` resolved) is one of ``roots`` or lies under one."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return False
    return any(real == r or r in real.parents for r in roots)


def authorised() -> bool:
    """True when no token is required, or the visitor gave it (query ``?token=`` or the form)."""
    token = os.environ.get(TOKEN_ENV)
    if not token or st.session_state.get("_authorised"):
        return True
    given = str(st.query_params.get("token") or "")
    if not given:
        st.title("bailclio explorer")
        given = st.text_input("Access token", type="password", key="access_token")
    if given and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        st.session_state["_authorised"] = True
        return True
    if given:
        st.error("Wrong access token.")
    return False
