"""The Node, Conversation and Search views."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from bailclio.explorer import data as D
from bailclio.explorer import widgets as W
from bailclio.explorer.sidebar import current_filters
from bailclio.taxonomy.model import UNSTABLE_BELOW


def view_node(ex: D.Explorer) -> None:
    node_id = st.session_state.get("node")
    if not node_id:
        st.header("Node")
        st.info("Select a node in the tree, the sunburst, the sidebar or a search result.")
        return
    tax = ex.taxonomy
    node = tax.by_id[node_id]
    crumbs = st.columns(len(tax.path(node_id)))
    for col, anc in zip(crumbs, tax.path(node_id), strict=True):
        col.button(
            W.esc(D.snippet(anc.name, 40)),
            key=f"crumb_{anc.id}",
            type="tertiary",
            on_click=W.select_node,
            args=(anc.id,),
        )
    st.header(W.esc(node.name, None))
    parent = tax.by_id.get(node.parent_id) if node.parent_id else None
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Conversations", f"{node.size:,}")
    m2.metric("Share of all", f"{node.size / max(ex.total, 1):.1%}")
    m3.metric("Share of parent", f"{node.size / parent.size:.1%}" if parent and parent.size else "—")
    m4.metric("Level", f"{ex.level_names[node.level] if node.level < len(ex.level_names) else node.level}")
    _stability_and_refusal(ex, node)
    st.caption(f"id {node.id}")
    st.text(node.description or "(no description)")
    if node.keywords:
        st.text("Keywords: " + ", ".join(node.keywords))
    kids = tax.children(node.id)
    if kids:
        st.subheader(f"Children ({len(kids)})")
        for k in sorted(kids, key=lambda n: (-n.size, n.id)):
            W.node_button(ex, k.id, f"child_{k.id}")
    for column, title in (("model", "By model"), ("bail_method", "By bail method")):
        if column in ex.frame.columns:
            st.subheader(title)
            st.dataframe(D.breakdown(ex, node.id, column), hide_index=True)
    if node.exemplar_ids:
        st.subheader("Exemplars")
        ex_rows = ex.frame.filter(pl.col("conversation_id").is_in(node.exemplar_ids))
        W.conversation_list(ex, ex_rows, "exemplar_page", "exemplar")
    filters = current_filters(ex)
    mem = D.members(ex, node.id, filters)
    st.subheader(f"Members ({mem.height:,}{' after filters' if filters.active else ''})")
    W.conversation_list(ex, mem, "member_page", "member")


def _stability_and_refusal(ex: D.Explorer, node: Any) -> None:
    """Stability (when taxonomy.json has it) and the no-refusal share (when rows have ``refused``)."""
    value, refusal = node.stability, D.no_refusal(ex, node.id)
    if value is None and refusal is None:
        return
    left, right = st.columns(2)
    if value is not None:
        left.metric("Stability", f"{value:.2f}", help="How reliably refits of the clustering find this node")
        if node.unstable:
            left.warning(
                f"Unstable: stability below {UNSTABLE_BELOW:.2f} (refits of the clustering do not "
                "find this node reliably)."
            )
    if refusal is not None:
        if refusal["share"] is None:
            right.metric("No-refusal share", "—", help="No row of this node has a refusal verdict")
        else:
            lo, hi = refusal["ci95"]
            right.metric("No-refusal share", f"{refusal['share']:.1%}")
            right.caption(
                f"95% interval {lo:.1%}–{hi:.1%}; {refusal['count']:,} of {refusal['n']:,} rows with a "
                "verdict were not refused"
            )


def view_conversation(ex: D.Explorer) -> None:
    st.header("Conversation")
    st.text_input("Conversation id", key="conv")
    cid = (st.session_state.get("conv") or "").strip()
    if not cid:
        st.info("Open a conversation from a node, the map or a search, or type its id.")
        return
    row = D.conversation(ex, cid)
    if row is None:
        st.error(f"No conversation with id '{cid}' in this run.")
        return
    main, side = st.columns([0.62, 0.38])
    bail_turn = row.get("bail_turn")
    with main:
        turns = row.get("conversation")
        if turns:
            for i, turn in enumerate(turns):
                role = str(turn.get("role") or "?")
                with st.chat_message(
                    "user" if role == "user" else "assistant" if role == "assistant" else "ai"
                ):
                    st.caption(f"turn {i} · {role}")
                    if bail_turn is not None and i == int(bail_turn):
                        st.warning("Bail turn: the model left the conversation here.")
                    st.text(turn.get("content") or "")
        else:
            st.text(row.get("text") or "")
    with side:
        leaf = row.get(f"lvl{ex.depth - 1}")
        if leaf:
            st.subheader("Node")
            for anc in ex.taxonomy.path(leaf):
                W.node_button(ex, anc.id, f"conv_node_{anc.id}")
            st.text("Outlier (attached to its nearest leaf)" if row.get("is_outlier") else "Clustered")
        if row.get("journal"):
            st.subheader("Journal")
            st.text(str(row["journal"]))
        if ex.facet_columns:
            st.subheader("Facets")
            for c in ex.facet_columns:
                st.caption(c[len(D.FACET_PREFIX) :])
                st.text(str(row.get(c)) if row.get(c) is not None else "—")
        st.subheader("Details")
        st.dataframe(D.details_table(ex, row), hide_index=True, key="conv_details")


def view_search(ex: D.Explorer) -> None:
    st.header("Search")
    query = st.text_input("Search conversations and node names/descriptions", key="q")
    filters = current_filters(ex)
    if query.strip():
        hits = D.search_nodes(ex, query)
        st.subheader(f"Nodes ({hits.height})")
        for nid in hits["id"].to_list()[:50]:
            W.node_button(ex, nid, f"search_node_{nid}")
    if not query.strip() and not filters.active:
        st.info("Type a query or set filters in the sidebar.")
        return
    rows = D.search_conversations(ex, query, filters)
    st.subheader(f"Conversations ({rows.height:,})")
    W.conversation_list(ex, rows, "search_page", "search")
