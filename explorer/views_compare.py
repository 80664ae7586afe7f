"""The Compare view: this run's nodes against another run's."""

from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from bailclio.errors import UserError
from bailclio.explorer import data as D
from bailclio.explorer import widgets as W
from bailclio.explorer.access import is_allowed
from bailclio.rundir import is_run_dir

REFUSED = (
    "Cannot open that path as a run: give a run directory under the folders this explorer was "
    "started with, or pick one below."
)


def other_run(typed: str, roots: list[Path]) -> D.Explorer | None:
    """The run at ``typed`` when it lies under ``roots`` and loads; None otherwise. The caller shows
    one message for every refusal, so the page never tells which paths exist."""
    path = Path(typed)
    if not is_allowed(path, roots) or not is_run_dir(path):
        return None
    try:
        return W.load(str(path.resolve()))
    except Exception:  # noqa: BLE001 - one message for any refusal (see above)
        return None


def view_compare(ex: D.Explorer, runs: list[str], roots: list[Path]) -> None:
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
    picked = st.session_state.get("cmp_pick")
    if not typed and not picked:
        st.info("Only one run was found; enter the path of another run directory.")
        return
    if typed:
        other_ex = other_run(typed, roots)
        if other_ex is None:
            st.error(REFUSED)
            return
    else:
        try:
            other_ex = W.load(picked)
        except UserError as exc:  # a run the sidebar listed (under the roots): its error is shown
            st.error(f"Cannot open the other run: {exc}")
            return
    other = str(other_ex.run.path)
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
