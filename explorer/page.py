"""The explorer page (run by ``app.py``): picks a run directory and shows its taxonomy.

Views: Taxonomy (tree + sunburst), Map, Node, Conversation, Search, Compare (runs), Groups
(one run's rows split by a column), Curate, Downloads.
The selected node and conversation live in ``st.session_state`` ("node", "conv") so a click in one
view selects everywhere. A run is loaded once per (path, file times) and never recomputed.

Conversation text and everything derived from it (node names come from keyphrases of the texts)
is untrusted: it is shown with ``st.text``/``st.dataframe``/``st.json``, or escaped before it goes
into a markdown label; HTML is never enabled.

The page opens only runs under the directories it was started with (``bailclio explore`` passes
them in :data:`bailclio.explorer.ROOTS_ENV`; the sidebar's path box refuses any other path without
saying whether it exists), and when :data:`bailclio.explorer.TOKEN_ENV` is set (a server bound
beyond loopback) it shows nothing until the visitor gives that token (``?token=`` or the form).

The views live in ``views_tree`` (Taxonomy, Map), ``views_node`` (Node, Conversation, Search),
``views_compare``, ``views_groups`` and ``views_curate`` (Curate, Downloads); ``widgets`` holds
what they share.
"""

from __future__ import annotations

import streamlit as st

from bailclio.explorer.access import allowed_roots, authorised
from bailclio.explorer.sidebar import VIEWS, sidebar
from bailclio.explorer.views_compare import view_compare
from bailclio.explorer.views_curate import view_curate, view_downloads
from bailclio.explorer.views_groups import view_groups
from bailclio.explorer.views_node import view_conversation, view_node, view_search
from bailclio.explorer.views_tree import view_map, view_taxonomy


def main(argv: list[str] | None = None) -> None:
    st.set_page_config(page_title="bailclio explorer", layout="wide")
    if not authorised():
        return
    for kind, msg in st.session_state.pop("flash", []):
        (st.error if kind == "error" else st.success)(msg)
    roots = allowed_roots(list(argv or []))
    ex, runs = sidebar(roots)
    if ex is None:
        return
    view = st.session_state.get("view", VIEWS[0])
    if view == "Taxonomy":
        view_taxonomy(ex)
    elif view == "Map":
        view_map(ex)
    elif view == "Node":
        view_node(ex)
    elif view == "Conversation":
        view_conversation(ex)
    elif view == "Search":
        view_search(ex)
    elif view == "Compare":
        view_compare(ex, runs, roots)
    elif view == "Groups":
        view_groups(ex)
    elif view == "Curate":
        view_curate(ex)
    elif view == "Downloads":
        view_downloads(ex)
