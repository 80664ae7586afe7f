"""The Compare view: this run's nodes against another run's."""

from __future__ import annotations

import html

import streamlit as st

from bailclio.errors import UserError
from bailclio.explorer import data as D
from bailclio.explorer import widgets as W


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
            format_func=lambda p: D.run_label(W.describe_cached(p, D.run_signature(p))),
        )
    other = typed or st.session_state.get("cmp_pick")
    if not other:
        st.info("Only one run was found; enter the path of another run directory.")
        return
    try:
        other_ex = W.load(other)
    except UserError as exc:
        st.error(f"Cannot open the other run: {exc}")
        return
    depth = min(ex.depth, other_ex.depth)
    level = st.selectbox(
        "Level", list(range(depth)), key="cmp_level", format_func=lambda i: ex.level_names[i]
    )
    table = W.compare_cached(
        here, D.run_signature(here), str(other_ex.run.path), D.run_signature(other), level
    )
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
