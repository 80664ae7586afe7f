"""The Groups view: one taxonomy, its rows split by a column (model, bail method, source, refused,
...): each node's share of every group with its 95% interval, significant differences marked."""

from __future__ import annotations

import html
from typing import Any

import streamlit as st

from bailclio.errors import UserError
from bailclio.explorer import data as D
from bailclio.explorer import groups as G
from bailclio.explorer import widgets as W
from bailclio.taxonomy.compare import CompareResult, compare_groups


@st.cache_data(max_entries=16, show_spinner="Comparing groups…")
def compare_cached(path: str, signature: tuple[Any, ...], by: str, level: int) -> CompareResult:
    return compare_groups(W.load_cached(path, signature).run, by, level)


def view_groups(ex: D.Explorer) -> None:
    import plotly.graph_objects as go

    st.header("Compare groups")
    columns = G.group_columns(ex)
    if not columns:
        st.info(
            "This run has no column that splits its rows into groups (for example model, bail_method, "
            "source or refused). Build one taxonomy over several inputs to compare them."
        )
        return
    left, right = st.columns(2)
    by = left.selectbox("Group by", columns, key="grp_by")
    level = right.selectbox(
        "Level", list(range(ex.depth)), key="grp_level", format_func=lambda i: ex.level_names[i]
    )
    path = str(ex.run.path)
    try:
        result = compare_cached(path, D.run_signature(path), by, level)
    except UserError as exc:
        st.error(str(exc))
        return
    sizes = ", ".join(f"{g}: {result.group_sizes[g]:,}" for g in result.groups)
    st.caption(
        f"Share of each group's rows in the node, with its 95% Wilson interval. A node is marked "
        f"significant when the groups differ there (its mix of groups against the mix where they "
        f"do not differ; Benjamini–Hochberg q ≤ {result.alpha:g}, below the top among the siblings "
        f"under parents that differ; the same test as `bailclio compare`): "
        f"{len(result.significant)} of {len(result.nodes)} are. Groups (rows): {sizes}."
    )
    for note in result.notes:
        st.warning(note)
    st.dataframe(G.group_table(result), hide_index=True, key="grp_table")
    fig = go.Figure()
    for series in G.interval_points(result):
        fig.add_trace(
            go.Scatter(
                x=series["share"],
                y=[html.escape(str(label)) for label in series["labels"]],
                mode="markers",
                name=html.escape(str(series["group"])),
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": series["plus"],
                    "arrayminus": series["minus"],
                },
            )
        )
    fig.update_layout(
        height=max(320, 34 * len(result.nodes) + 120),
        xaxis={"tickformat": ".0%", "title": "share of the group's rows (95% interval); ★ significant"},
        yaxis={"autorange": "reversed"},
        margin={"t": 10, "l": 10, "r": 10, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0},
        scattermode="group",
    )
    st.plotly_chart(fig, key="grp_chart")
