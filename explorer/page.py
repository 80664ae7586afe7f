"""The explorer page (run by ``app.py``): picks a run directory and shows its taxonomy.

Views: Taxonomy (tree + sunburst), Map, Node, Conversation, Search, Compare, Curate, Downloads.
The selected node and conversation live in ``st.session_state`` ("node", "conv") so a click in one
view selects everywhere. A run is loaded once per (path, file times) and never recomputed.

Conversation text and everything derived from it (node names come from keyphrases of the texts)
is untrusted: it is shown with ``st.text``/``st.dataframe``/``st.json``, or escaped before it goes
into a markdown label; HTML is never enabled.

The page opens only runs under the directories it was started with (``bailclio explore`` passes
them in :data:`bailclio.explorer.ROOTS_ENV`; the sidebar's path box refuses any other path without
saying whether it exists), and when :data:`bailclio.explorer.TOKEN_ENV` is set (a server bound
beyond loopback) it shows nothing until the visitor gives that token (``?token=`` or the form).
"""

from __future__ import annotations

import hmac
import html
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from bailclio import rundir
from bailclio.errors import UserError
from bailclio.explorer import ROOTS_ENV, TOKEN_ENV
from bailclio.explorer import data as D

VIEWS = ("Taxonomy", "Map", "Node", "Conversation", "Search", "Compare", "Curate", "Downloads")
PAGE_SIZE = 20
MAP_MAX_POINTS = 20_000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")


def esc(text: Any, limit: int | None = 120) -> str:
    """Text made literal for a markdown label (buttons, expanders, headers)."""
    s = " ".join(str(text if text is not None else "").split())
    if limit and len(s) > limit:
        s = s[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", s)


# --------------------------------------------------------------------------- loading (cached)


@st.cache_resource(max_entries=4, show_spinner="Loading run…")
def _load(path: str, signature: tuple[Any, ...]) -> D.Explorer:
    return D.prepare(rundir.load_run(path))


@st.cache_data(max_entries=64, show_spinner=False)
def _describe(path: str, signature: tuple[Any, ...]) -> dict[str, Any]:
    return D.describe_run(path)


@st.cache_data(max_entries=8, show_spinner="Comparing runs…")
def _compare(a: str, sig_a: tuple, b: str, sig_b: tuple, level: int) -> pl.DataFrame:
    return D.compare(_load(a, sig_a), _load(b, sig_b), level)


@st.cache_data(max_entries=8, show_spinner="Preparing download…")
def _download(path: str, signature: tuple[Any, ...], kind: str) -> bytes:
    run = _load(path, signature).run
    if kind == "taxonomy":
        return D.taxonomy_json(run)
    if kind == "csv":
        return D.labels_csv(run)
    return D.labels_parquet(run)


def load(path: str) -> D.Explorer:
    return _load(path, D.run_signature(path))


# --------------------------------------------------------------------------- selection helpers


def _select_node(node_id: str, view: str | None = "Node") -> None:
    st.session_state["node"] = node_id
    st.session_state["member_page"] = 1
    if view:
        st.session_state["view"] = view


def _open_conversation(cid: str) -> None:
    st.session_state["conv"] = cid
    st.session_state["view"] = "Conversation"


def _flash(kind: str, msg: str) -> None:
    st.session_state.setdefault("flash", []).append((kind, msg))


def node_label(ex: D.Explorer, node_id: str) -> str:
    n = ex.node(node_id)
    if n is None:
        return node_id
    share = n.size / ex.total if ex.total else 0.0
    return f"{n.name} — {n.size:,} ({share:.1%}) [{n.id}]"


def node_button(ex: D.Explorer, node_id: str, key: str, *, container: Any = st) -> None:
    container.button(
        esc(node_label(ex, node_id)),
        key=key,
        type="tertiary",
        on_click=_select_node,
        args=(node_id,),
    )


# --------------------------------------------------------------------------- sidebar


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


def sidebar(argv: list[str]) -> tuple[D.Explorer | None, list[str]]:
    sb = st.sidebar
    sb.title("bailclio explorer")
    roots = allowed_roots(argv)
    if "runs_root" not in st.session_state:
        st.session_state["runs_root"] = str(roots[0])
    sb.text_input("Run directory or folder of runs", key="runs_root")
    root = Path(st.session_state["runs_root"].strip() or roots[0])
    if not is_allowed(root, roots):
        st.error(
            "This explorer opens only runs under: "
            + ", ".join(str(r) for r in roots)
            + " (the folders `bailclio explore` was started with)"
        )
        return None, []
    if not root.exists():
        st.error(f"{root}: no such run directory or folder")
        return None, []
    runs = [str(p) for p in rundir.find_runs(root)]
    if not runs:
        if root.is_dir() and (root / rundir.MANIFEST).exists():
            runs = [str(root)]  # a damaged run directory: load it to show what is wrong
        else:
            st.error(f"{root}: no bailclio run directories found (expected manifest.json, ...)")
            return None, []
    labels = {p: D.run_label(_describe(p, D.run_signature(p))) for p in runs}
    if st.session_state.get("run_path") not in runs:
        st.session_state["run_path"] = runs[0]
    sb.selectbox("Run", runs, key="run_path", format_func=lambda p: labels.get(p, p))
    with sb.expander(f"All runs ({len(runs)})"):
        rows = [_describe(p, D.run_signature(p)) for p in runs]
        table = pl.DataFrame(
            [
                {
                    "run": r["name"],
                    "created": r.get("created", ""),
                    "input": r.get("input", ""),
                    "rows": r.get("rows"),
                    "model": r.get("llm") or r.get("embedding"),
                    "facets": ", ".join(r.get("facets", [])),
                    "curated": r.get("curated", False),
                    "path": r["path"],
                }
                for r in rows
            ]
        )
        st.dataframe(table, hide_index=True)
    try:
        ex = load(st.session_state["run_path"])
    except UserError as exc:
        st.error(f"Cannot open this run: {exc}")
        return None, runs
    except Exception as exc:  # noqa: BLE001 - the page shows one line, never a traceback
        st.error(
            f"Cannot open this run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return None, runs

    # Keep selections valid for this run before their widgets are created.
    ids = [n.id for n in sorted(ex.taxonomy.nodes, key=lambda n: (n.level, -n.size, n.id))]
    if st.session_state.get("node") not in ids:
        st.session_state["node"] = ""
    st.session_state.setdefault("view", VIEWS[0])
    sb.radio("View", VIEWS, key="view")
    sb.selectbox(
        "Selected node",
        ["", *ids],
        key="node",
        format_func=lambda i: "(none)" if not i else ("  " * ex.node(i).level) + node_label(ex, i),
    )
    with sb.expander("Filters", expanded=False):
        _filter_widgets(ex)
    return ex, runs


def _filter_widgets(ex: D.Explorer) -> None:
    if ex.models:
        st.multiselect("Model", ex.models, key="f_models")
    if ex.bail_methods:
        st.multiselect("Bail method", ex.bail_methods, key="f_methods")
    st.multiselect(
        "Top category",
        [n.id for n in ex.taxonomy.roots],
        key="f_tops",
        format_func=lambda i: node_label(ex, i),
    )
    st.radio("Outliers", ["include", "exclude", "only"], key="f_outliers", horizontal=True)
    if ex.label_columns:
        cols = ["", *ex.label_columns]
        if st.session_state.get("f_label_col") not in cols:
            st.session_state["f_label_col"] = ""
        st.selectbox("Label column", cols, key="f_label_col", format_func=lambda c: c or "(none)")
        col = st.session_state.get("f_label_col")
        if col:
            st.multiselect(f"{col} is one of", ex.label_columns[col], key=f"f_label_{col}")


def current_filters(ex: D.Explorer) -> D.Filters:
    ss = st.session_state
    col = ss.get("f_label_col") or None
    valid_tops = {n.id for n in ex.taxonomy.roots}
    return D.Filters(
        models=[m for m in ss.get("f_models", []) if m in ex.models],
        bail_methods=[m for m in ss.get("f_methods", []) if m in ex.bail_methods],
        tops=[t for t in ss.get("f_tops", []) if t in valid_tops],
        outliers=ss.get("f_outliers", "include"),
        label_column=col if col in ex.label_columns else None,
        label_values=list(ss.get(f"f_label_{col}", [])) if col else [],
    )


# --------------------------------------------------------------------------- views


def view_taxonomy(ex: D.Explorer) -> None:
    m = ex.run.manifest
    c = m.get("counts", {})
    st.header("Taxonomy")
    st.caption(
        f"{ex.total:,} conversations · {len(ex.taxonomy.roots)} top categories · "
        f"{len(ex.taxonomy.leaves)} leaves · {c.get('outliers', 0):,} outliers · "
        f"created {m.get('created_at', '?')}"
        + (f" · {m['curation']['edits']} curation edits applied" if m.get("curation") else "")
    )
    if m.get("status") == "incomplete":  # part of the LLM stage failed: said, never hidden
        st.warning("Incomplete run: " + "; ".join(str(r) for r in m.get("incomplete") or []))
    left, right = st.columns([1, 1])
    with left:
        tax = ex.taxonomy
        selected = st.session_state.get("node") or None
        sel_path = {n.id for n in tax.path(selected)} if selected else set()
        for top in sorted(tax.roots, key=lambda n: (-n.size, n.id)):
            share = top.size / ex.total if ex.total else 0.0
            with st.expander(f"{esc(top.name)} — {top.size:,} ({share:.1%})", expanded=top.id in sel_path):
                node_button(ex, top.id, f"tree_{top.id}")
                _tree_children(ex, top.id, 1)
    with right:
        _sunburst(ex)


def _tree_children(ex: D.Explorer, node_id: str, indent: int) -> None:
    for child in sorted(ex.taxonomy.children(node_id), key=lambda n: (-n.size, n.id)):
        pad, body = st.columns([0.06 * indent, 1 - 0.06 * indent])
        parent_size = ex.node(node_id).size or 1
        with body:
            node_button(ex, child.id, f"tree_{child.id}")
            st.caption(f"{child.size / parent_size:.0%} of parent")
        _tree_children(ex, child.id, indent + 1)


def _sunburst(ex: D.Explorer) -> None:
    import plotly.graph_objects as go

    tax = ex.taxonomy
    nodes = tax.nodes
    fig = go.Figure(
        go.Sunburst(
            ids=[n.id for n in nodes],
            labels=[html.escape(D.snippet(n.name, 40)) for n in nodes],
            parents=[n.parent_id or "" for n in nodes],
            values=[n.size for n in nodes],
            branchvalues="total",
            customdata=[n.id for n in nodes],
            hovertemplate="%{label}<br>%{value} conversations (%{percentRoot:.1%})<extra>%{id}</extra>",
            maxdepth=ex.depth,
        )
    )
    fig.update_layout(margin={"t": 10, "l": 10, "r": 10, "b": 10}, height=560)
    st.plotly_chart(fig, key="sunburst", on_select=_on_sunburst, selection_mode="points")


def _on_sunburst() -> None:
    event = st.session_state.get("sunburst") or {}
    points = (event.get("selection") or {}).get("points") or []
    for p in points:
        node_id = p.get("id") or p.get("customdata")
        if isinstance(node_id, list):
            node_id = node_id[0] if node_id else None
        if node_id:
            _select_node(str(node_id), view=None)
            return


def view_map(ex: D.Explorer) -> None:
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Plotly + qualitative.D3[1::2] + qualitative.Dark24
    st.header("Map")
    level = st.selectbox(
        "Colour by level",
        list(range(ex.depth)),
        key="map_level",
        format_func=lambda i: ex.level_names[i],
    )
    filters = current_filters(ex)
    pts, n = D.map_points(ex, level, MAP_MAX_POINTS, filters)
    shown = pts.height
    st.caption(
        f"{n:,} conversations{' (filtered)' if filters.active else ''}"
        + (f"; showing a sample of {shown:,}" if shown < n else "")
        + ". Outliers are grey. Box or lasso select to list conversations."
    )
    col = f"lvl{level}"
    fig = go.Figure()
    inliers = pts.filter(~pl.col("is_outlier"))
    groups = inliers.partition_by(col, as_dict=True, maintain_order=True)
    order = sorted(groups, key=lambda k: -groups[k].height)
    hover = "%{text}<extra></extra>"

    def hover_text(frame: pl.DataFrame) -> list[str]:
        return [
            f"{html.escape(str(name or ''))}<br>{html.escape(D.snippet(s, 100))}"
            for name, s in zip(frame[f"{col}_name"], frame["snippet"], strict=True)
        ]

    for i, key in enumerate(order):
        g = groups[key]
        node_id = key[0] if isinstance(key, tuple) else key
        node = ex.node(str(node_id))
        fig.add_trace(
            go.Scattergl(
                x=g["x"].to_numpy(),
                y=g["y"].to_numpy(),
                mode="markers",
                name=html.escape(D.snippet(node.name if node else str(node_id), 40)),
                marker={"size": 6 if shown < 5000 else 3, "color": palette[i % len(palette)], "opacity": 0.8},
                customdata=g["_row"].to_numpy(),
                text=hover_text(g),
                hovertemplate=hover,
                showlegend=len(order) <= 30,
            )
        )
    outl = pts.filter(pl.col("is_outlier"))
    if outl.height:
        fig.add_trace(
            go.Scattergl(
                x=outl["x"].to_numpy(),
                y=outl["y"].to_numpy(),
                mode="markers",
                name="outliers",
                marker={"size": 5 if shown < 5000 else 3, "color": "#9e9e9e", "opacity": 0.35},
                customdata=outl["_row"].to_numpy(),
                text=hover_text(outl),
                hovertemplate=hover,
            )
        )
    fig.update_layout(
        height=620,
        margin={"t": 10, "l": 10, "r": 10, "b": 10},
        dragmode="lasso",
        xaxis={"visible": False},
        yaxis={"visible": False},
        legend={"itemsizing": "constant"},
    )
    event = st.plotly_chart(fig, key="map", on_select="rerun", selection_mode=("points", "box", "lasso"))
    rows = []
    for p in ((event or {}).get("selection") or {}).get("points", []) if event else []:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd is not None:
            rows.append(int(cd))
    if rows:
        picked = ex.frame.filter(pl.col("_row").is_in(rows))
        st.subheader(f"{picked.height:,} selected conversations")
        _conversation_list(ex, picked, "map_page", "map")


def _conversation_list(ex: D.Explorer, frame: pl.DataFrame, page_key: str, prefix: str) -> None:
    """A paged list: open button, leaf button, snippet."""
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
    for row in D.page(frame, page_no, PAGE_SIZE).iter_rows(named=True):
        cid = row["conversation_id"]
        a, b, c = st.columns([0.18, 0.27, 0.55])
        a.button(
            f"open {esc(cid, 24)}",
            key=f"{prefix}_open_{cid}",
            on_click=_open_conversation,
            args=(cid,),
            help="Open this conversation",
        )
        if row.get(leaf):
            b.button(
                esc(D.snippet(row.get(f"{leaf}_name"), 40)),
                key=f"{prefix}_node_{cid}",
                type="tertiary",
                on_click=_select_node,
                args=(row[leaf],),
            )
        c.text(("[outlier] " if row.get("is_outlier") else "") + D.snippet(row["text"], 220))


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
            esc(D.snippet(anc.name, 40)),
            key=f"crumb_{anc.id}",
            type="tertiary",
            on_click=_select_node,
            args=(anc.id,),
        )
    st.header(esc(node.name, None))
    parent = tax.by_id.get(node.parent_id) if node.parent_id else None
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Conversations", f"{node.size:,}")
    m2.metric("Share of all", f"{node.size / max(ex.total, 1):.1%}")
    m3.metric("Share of parent", f"{node.size / parent.size:.1%}" if parent and parent.size else "—")
    m4.metric("Level", f"{ex.level_names[node.level] if node.level < len(ex.level_names) else node.level}")
    st.caption(f"id {node.id}")
    st.text(node.description or "(no description)")
    if node.keywords:
        st.text("Keywords: " + ", ".join(node.keywords))
    kids = tax.children(node.id)
    if kids:
        st.subheader(f"Children ({len(kids)})")
        for k in sorted(kids, key=lambda n: (-n.size, n.id)):
            node_button(ex, k.id, f"child_{k.id}")
    for column, title in (("model", "By model"), ("bail_method", "By bail method")):
        if column in ex.frame.columns:
            st.subheader(title)
            st.dataframe(D.breakdown(ex, node.id, column), hide_index=True)
    if node.exemplar_ids:
        st.subheader("Exemplars")
        ex_rows = ex.frame.filter(pl.col("conversation_id").is_in(node.exemplar_ids))
        _conversation_list(ex, ex_rows, "exemplar_page", "exemplar")
    filters = current_filters(ex)
    mem = D.members(ex, node.id, filters)
    st.subheader(f"Members ({mem.height:,}{' after filters' if filters.active else ''})")
    _conversation_list(ex, mem, "member_page", "member")


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
                node_button(ex, anc.id, f"conv_node_{anc.id}")
            st.text("Outlier (attached to its nearest leaf)" if row.get("is_outlier") else "Clustered")
        if row.get("journal"):
            st.subheader("Journal")
            st.text(str(row["journal"]))
        if ex.facet_columns:
            st.subheader("Facets")
            for c in ex.facet_columns:
                st.caption(c[len(D.FACET_PREFIX) :])
                st.text(str(row.get(c)) if row.get(c) is not None else "—")
        st.subheader("Metadata")
        meta = {c: row.get(c) for c in ex.meta_columns}
        meta.update({"outlier_score": row.get("outlier_score"), "x": row.get("x"), "y": row.get("y")})
        st.json(
            {
                k: (v if isinstance(v, str | int | float | bool) or v is None else str(v))
                for k, v in meta.items()
            }
        )


def view_search(ex: D.Explorer) -> None:
    st.header("Search")
    query = st.text_input("Search conversations and node names/descriptions", key="q")
    filters = current_filters(ex)
    if query.strip():
        hits = D.search_nodes(ex, query)
        st.subheader(f"Nodes ({hits.height})")
        for nid in hits["id"].to_list()[:50]:
            node_button(ex, nid, f"search_node_{nid}")
    if not query.strip() and not filters.active:
        st.info("Type a query or set filters in the sidebar.")
        return
    rows = D.search_conversations(ex, query, filters)
    st.subheader(f"Conversations ({rows.height:,})")
    _conversation_list(ex, rows, "search_page", "search")


def view_compare(ex: D.Explorer, runs: list[str]) -> None:
    import plotly.graph_objects as go

    st.header("Compare runs")
    here = str(ex.run.path)
    others = [p for p in runs if p != here]
    st.text_input("Other run directory (or pick below)", key="cmp_path")
    typed = (st.session_state.get("cmp_path") or "").strip()
    if others:
        st.selectbox(
            "Compare with",
            others,
            key="cmp_pick",
            format_func=lambda p: D.run_label(_describe(p, D.run_signature(p))),
        )
    other = typed or st.session_state.get("cmp_pick")
    if not other:
        st.info("Only one run was found; enter the path of another run directory.")
        return
    try:
        other_ex = load(other)
    except UserError as exc:
        st.error(f"Cannot open the other run: {exc}")
        return
    depth = min(ex.depth, other_ex.depth)
    level = st.selectbox(
        "Level", list(range(depth)), key="cmp_level", format_func=lambda i: ex.level_names[i]
    )
    table = _compare(here, D.run_signature(here), str(other_ex.run.path), D.run_signature(other), level)
    counts = dict(table.group_by("status").len().iter_rows())
    st.caption(
        f"A = {ex.run.path.name} ({ex.total:,} rows), B = {other_ex.run.path.name} "
        f"({other_ex.total:,} rows). "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("stable", "grew", "shrank", "new", "vanished"))
    )
    st.dataframe(table, hide_index=True)
    label = [
        D.snippet(a if a is not None else b, 40)
        for a, b in zip(table["a_name"].to_list(), table["b_name"].to_list(), strict=True)
    ]
    label = [html.escape(s) for s in label]
    fig = go.Figure(
        [
            go.Bar(y=label, x=table["a_share"].to_list(), name="A", orientation="h"),
            go.Bar(y=label, x=table["b_share"].to_list(), name="B", orientation="h"),
        ]
    )
    fig.update_layout(
        barmode="group",
        height=max(300, 28 * len(label)),
        xaxis={"tickformat": ".0%"},
        yaxis={"autorange": "reversed"},
        margin={"t": 10, "l": 10, "r": 10, "b": 10},
    )
    st.plotly_chart(fig, key="cmp_chart")


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
            _flash("success", f"Undid {undone['op']}" if undone else "Nothing to undo")
            return
        _flash("success", f"Saved: {action} ({rundir.CURATION})")
    except UserError as exc:
        _flash("error", str(exc))


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
        st.subheader(esc(node_label(ex, node_id), None))
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
                format_func=lambda i: node_label(ex, i),
            )
            st.button("Merge", key=f"cur_merge_btn_{node_id}", on_click=_curate, args=("merge", run, node_id))
        if not tax.children(node_id) and node.level > 0:
            parents = [n.id for n in tax.nodes if n.level == node.level - 1 and n.id != node.parent_id]
            if parents:
                st.selectbox(
                    "Move this leaf under",
                    parents,
                    key=f"cur_parent_{node_id}",
                    format_func=lambda i: node_label(ex, i),
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
            _download(path, sig, kind),
            file_name=f"{stem}-{suffix}",
            mime=mime,
            key=f"dl_{kind}",
        )
    st.caption("Labels: conversation_id, each level's id and name, is_outlier, then every input column.")


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    st.set_page_config(page_title="bailclio explorer", layout="wide")
    if not authorised():
        return
    for kind, msg in st.session_state.pop("flash", []):
        (st.error if kind == "error" else st.success)(msg)
    ex, runs = sidebar(list(argv or []))
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
        view_compare(ex, runs)
    elif view == "Curate":
        view_curate(ex)
    elif view == "Downloads":
        view_downloads(ex)
