"""Pieces every explorer view uses: escaping for markdown labels, the cached run loaders, the
shared selection (``st.session_state`` "node" and "conv") and the paged conversation list.

Conversation text and everything derived from it is untrusted: it is shown with
``st.text``/``st.dataframe``, or escaped with :func:`esc` before it goes into a markdown label.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import streamlit as st

from bailclio import rundir
from bailclio.explorer import data as D

PAGE_SIZE = 20
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")


def esc(text: Any, limit: int | None = 120) -> str:
    """Text made literal for a markdown label (buttons, expanders, headers)."""
    s = " ".join(str(text if text is not None else "").split())
    if limit and len(s) > limit:
        s = s[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", s)


# --------------------------------------------------------------------------- loading (cached)


@st.cache_resource(max_entries=4, show_spinner="Loading run…")
def load_cached(path: str, signature: tuple[Any, ...]) -> D.Explorer:
    return D.prepare(rundir.load_run(path))


@st.cache_data(max_entries=64, show_spinner=False)
def describe_cached(path: str, signature: tuple[Any, ...]) -> dict[str, Any]:
    return D.describe_run(path)


@st.cache_data(max_entries=8, show_spinner="Preparing download…")
def download_cached(path: str, signature: tuple[Any, ...], kind: str) -> bytes:
    run = load_cached(path, signature).run
    if kind == "taxonomy":
        return D.taxonomy_json(run)
    if kind == "csv":
        return D.labels_csv(run)
    return D.labels_parquet(run)


def load(path: str) -> D.Explorer:
    return load_cached(path, D.run_signature(path))


# --------------------------------------------------------------------------- selection helpers


def select_node(node_id: str, view: str | None = "Node") -> None:
    st.session_state["node"] = node_id
    st.session_state["member_page"] = 1
    if view:
        st.session_state["view"] = view


def open_conversation(cid: str) -> None:
    st.session_state["conv"] = cid
    st.session_state["view"] = "Conversation"


def flash(kind: str, msg: str) -> None:
    st.session_state.setdefault("flash", []).append((kind, msg))


def node_label(ex: D.Explorer, node_id: str) -> str:
    n = ex.node(node_id)
    if n is None:
        return node_id
    share = n.size / ex.total if ex.total else 0.0
    mark = " · unstable" if n.unstable else ""
    return f"{n.name} — {n.size:,} ({share:.1%}){mark} [{n.id}]"


def node_button(ex: D.Explorer, node_id: str, key: str, *, container: Any = st) -> None:
    container.button(
        esc(node_label(ex, node_id)),
        key=key,
        type="tertiary",
        on_click=select_node,
        args=(node_id,),
    )


def conversation_list(ex: D.Explorer, frame: pl.DataFrame, page_key: str, prefix: str) -> None:
    """A paged list: open button, leaf button (only when the list spans several leaves: a node's
    own members do not repeat its name on every row), snippet."""
    n = frame.height
    if n == 0:
        st.info("No conversations.")
        return
    pages = D.n_pages(n, PAGE_SIZE)
    if st.session_state.get(page_key, 1) > pages:
        st.session_state[page_key] = 1
    if pages > 1:
        st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=page_key)
    page_no = int(st.session_state.get(page_key, 1))
    leaf = f"lvl{ex.depth - 1}"
    several = frame[leaf].n_unique() > 1
    for row in D.page(frame, page_no, PAGE_SIZE).iter_rows(named=True):
        cid = row["conversation_id"]
        if several:
            a, b, c = st.columns([0.18, 0.27, 0.55])
        else:
            (a, c), b = st.columns([0.18, 0.82]), None
        a.button(
            f"open {esc(cid, 24)}",
            key=f"{prefix}_open_{cid}",
            on_click=open_conversation,
            args=(cid,),
            help="Open this conversation",
        )
        if b is not None and row.get(leaf):
            b.button(
                esc(D.snippet(row.get(f"{leaf}_name"), 40)),
                key=f"{prefix}_node_{cid}",
                type="tertiary",
                on_click=select_node,
                args=(row[leaf],),
            )
        c.text(("[outlier] " if row.get("is_outlier") else "") + D.snippet(row["text"], 220))
