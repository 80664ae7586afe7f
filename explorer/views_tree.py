"""The Taxonomy view (tree and sunburst) and the Map view (the 2-D layout, coloured by level)."""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from bailclio.explorer import data as D
from bailclio.explorer import widgets as W
from bailclio.explorer.sidebar import current_filters

MAP_MAX_POINTS = 20_000


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
            mark = " · unstable" if top.unstable else ""
            label = f"{W.esc(top.name)} — {top.size:,} ({share:.1%}){mark}"
            with st.expander(label, expanded=top.id in sel_path):
                W.node_button(ex, top.id, f"tree_{top.id}")
                _tree_children(ex, top.id, 1)
    with right:
        _sunburst(ex)


def _tree_children(ex: D.Explorer, node_id: str, indent: int) -> None:
    for child in sorted(ex.taxonomy.children(node_id), key=lambda n: (-n.size, n.id)):
        pad, body = st.columns([0.06 * indent, 1 - 0.06 * indent])
        parent_size = ex.node(node_id).size or 1
        with body:
            W.node_button(ex, child.id, f"tree_{child.id}")
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
            W.select_node(str(node_id), view=None)
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
        height=680,
        margin={"t": 10, "l": 10, "r": 10, "b": 10},
        dragmode="lasso",
        xaxis={"visible": False},
        yaxis={"visible": False},
        # the legend sits under the map, clear of the toolbar in the top right corner
        legend={"itemsizing": "constant", "orientation": "h", "yanchor": "top", "y": -0.02, "x": 0},
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
        W.conversation_list(ex, picked, "map_page", "map")
