"""The Curate view (rename, describe, merge, move, undo; kept in curation.json) and Downloads."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from bailclio import rundir
from bailclio.errors import UserError
from bailclio.explorer import data as D
from bailclio.explorer import widgets as W


def _curate(action: str, run: Any, node_id: str) -> None:
    from bailclio.taxonomy import curation as C

    ss = st.session_state
    try:
        if action == "rename":
            C.rename_node(run, node_id, ss.get(f"cur_name_{node_id}", ""))
        elif action == "describe":
            C.describe_node(run, node_id, ss.get(f"cur_desc_{node_id}", ""))
        elif action == "merge":
            C.merge_nodes(run, ss.get(f"cur_merge_{node_id}") or "", node_id)
        elif action == "move":
            C.move_leaf(run, node_id, ss.get(f"cur_parent_{node_id}") or "")
        elif action == "undo":
            undone = C.undo_last(run.path)
            W.flash("success", f"Undid {undone['op']}" if undone else "Nothing to undo")
            return
        W.flash("success", f"Saved: {action} ({rundir.CURATION})")
    except UserError as exc:
        W.flash("error", str(exc))


def view_curate(ex: D.Explorer) -> None:
    from bailclio.taxonomy import curation as C

    st.header("Curate")
    st.caption(
        f"Edits are kept in {ex.run.path / rundir.CURATION} and applied on load; "
        "the pipeline's files are not changed."
    )
    node_id = st.session_state.get("node")
    run = ex.run
    if not node_id:
        st.info("Select a node to rename, describe, merge or move it.")
    else:
        tax = ex.taxonomy
        node = tax.by_id[node_id]
        st.subheader(W.esc(W.node_label(ex, node_id), None))
        with st.form(f"rename_form_{node_id}", border=False):
            st.text_input("Name", value=node.name, key=f"cur_name_{node_id}")
            st.form_submit_button("Rename", on_click=_curate, args=("rename", run, node_id))
        with st.form(f"describe_form_{node_id}", border=False):
            st.text_area("Description", value=node.description, key=f"cur_desc_{node_id}")
            st.form_submit_button("Save description", on_click=_curate, args=("describe", run, node_id))
        siblings = [n.id for n in tax.children(node.parent_id) if n.id != node_id]
        if siblings:
            st.selectbox(
                "Merge a sibling into this node",
                siblings,
                key=f"cur_merge_{node_id}",
                format_func=lambda i: W.node_label(ex, i),
            )
            st.button("Merge", key=f"cur_merge_btn_{node_id}", on_click=_curate, args=("merge", run, node_id))
        if not tax.children(node_id) and node.level > 0:
            parents = [n.id for n in tax.nodes if n.level == node.level - 1 and n.id != node.parent_id]
            if parents:
                st.selectbox(
                    "Move this leaf under",
                    parents,
                    key=f"cur_parent_{node_id}",
                    format_func=lambda i: W.node_label(ex, i),
                )
                st.button(
                    "Move", key=f"cur_move_btn_{node_id}", on_click=_curate, args=("move", run, node_id)
                )
    edits = C.load_edits(run.path)
    st.subheader(f"Edit log ({len(edits)})")
    if edits:
        st.dataframe(pl.DataFrame([{k: str(v) for k, v in e.items()} for e in edits]), hide_index=True)
        st.button("Undo last edit", key="cur_undo", on_click=_curate, args=("undo", run, ""))


def view_downloads(ex: D.Explorer) -> None:
    st.header("Downloads")
    path = str(ex.run.path)
    sig = D.run_signature(path)
    curated = " (curated)" if ex.run.manifest.get("curation") else ""
    stem = ex.run.path.name
    for label, kind, suffix, mime in (
        ("Taxonomy (JSON)", "taxonomy", "taxonomy.json", "application/json"),
        ("Labels (CSV)", "csv", "labels.csv", "text/csv"),
        ("Labels (Parquet)", "parquet", "labels.parquet", "application/octet-stream"),
    ):
        st.download_button(
            f"{label}{curated}",
            W.download_cached(path, sig, kind),
            file_name=f"{stem}-{suffix}",
            mime=mime,
            key=f"dl_{kind}",
        )
    st.caption(
        "Labels: conversation_id, each level's id and name, is_outlier, then every input column: the "
        "files `bailclio export --format csv|parquet` writes (in CSV, a cell a spreadsheet would run "
        "as a formula starts with ')."
    )
