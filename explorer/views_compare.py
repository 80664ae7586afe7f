"""The Compare view: this run against another, both runs' rows on this run's taxonomy
(:func:`bailclio.taxonomy.diff.diff_runs`, what ``bailclio diff`` prints), with intervals."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import streamlit as st

from bailclio.errors import UserError
from bailclio.explorer import compare as C
from bailclio.explorer import data as D
from bailclio.explorer import widgets as W
from bailclio.explorer.access import is_allowed
from bailclio.rundir import is_run_dir
from bailclio.taxonomy.diff import DiffResult, diff_runs

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


@st.cache_data(max_entries=8, show_spinner="Placing both runs' rows on A's taxonomy…")
def diff_cached(a: str, sig_a: tuple[Any, ...], b: str, sig_b: tuple[Any, ...], level: int) -> DiffResult:
    return diff_runs(W.load_cached(a, sig_a).run, W.load_cached(b, sig_b).run, level)


def pick_other(ex: D.Explorer, runs: list[str], roots: list[Path]) -> D.Explorer | None:
    """The run to compare with: typed (held to ``roots``) or picked from the runs found."""
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
        return None
    if typed:
        other_ex = other_run(typed, roots)
        if other_ex is None:
            st.error(REFUSED)
        return other_ex
    try:
        return W.load(picked)
    except UserError as exc:  # a run the sidebar listed (under the roots): its error is shown
        st.error(f"Cannot open the other run: {exc}")
        return None


def view_compare(ex: D.Explorer, runs: list[str], roots: list[Path]) -> None:
    st.header("Compare runs")
    other_ex = pick_other(ex, runs, roots)
    if other_ex is None:
        return
    depth = min(ex.depth, other_ex.depth)
    level = st.selectbox(
        "Level", list(range(depth)), key="cmp_level", format_func=lambda i: ex.level_names[i]
    )
    here, other = str(ex.run.path), str(other_ex.run.path)
    try:
        result = diff_cached(here, D.run_signature(here), other, D.run_signature(other), level)
    except UserError as exc:
        st.error(f"Cannot compare these runs: {exc}")
        return
    st.caption(
        f"A = {ex.run.path.name} ({result.a['rows']:,} rows), B = {other_ex.run.path.name} "
        f"({result.b['rows']:,} rows). Both runs' rows are placed on A's taxonomy and compared there: "
        "shares with 95% Wilson intervals, the change with its 95% Newcombe interval; a node grew or "
        "shrank only when its test is significant (Benjamini–Hochberg q ≤ 0.05), any other move is "
        "inside the noise."
    )
    for note in result.notes:
        st.info(note)
    if result.nodes is not None:
        nodes = C.node_table(result)
        counts = dict(nodes.group_by("status").len().iter_rows()) if nodes.height else {}
        st.subheader(
            f"On A's taxonomy: {counts.get('grew', 0)} grew, {counts.get('shrank', 0)} shrank, "
            f"{counts.get(C.NO_CHANGE, 0)} {C.NO_CHANGE}"
        )
        st.dataframe(nodes, hide_index=True, key="cmp_nodes")
        _change_chart(result)
    st.subheader("Each run's own taxonomy, nodes matched")
    st.caption(
        f"Matched by names and centroids; a match less similar than {result.uncertain_below:.2f} is "
        "uncertain and never called a change. The partition gap is the part of a pair's change that "
        "is only the two clusterings cutting the data differently."
    )
    st.dataframe(C.pair_table(result), hide_index=True, key="cmp_pairs")
    left, right = st.columns(2)
    left.caption(f"Only in A ({len(result.only_in_a)})")
    left.dataframe(C.unmatched_table(result.only_in_a), hide_index=True, key="cmp_only_a")
    right.caption(f"Only in B ({len(result.only_in_b)})")
    right.dataframe(C.unmatched_table(result.only_in_b), hide_index=True, key="cmp_only_b")


def _change_chart(result: DiffResult) -> None:
    import plotly.graph_objects as go

    bars = C.change_bars(result)
    if not bars:
        return
    labels = [html.escape(("★ " if sig else "") + label) for label, _, _, _, sig in bars]
    fig = go.Figure(
        go.Scatter(
            x=[c for _, c, _, _, _ in bars],
            y=labels,
            mode="markers",
            name="change B − A",
            marker={"color": ["#c0392b" if sig else "#7f8c8d" for *_, sig in bars], "size": 9},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [hi - c for _, c, _, hi, _ in bars],
                "arrayminus": [c - lo for _, c, lo, _, _ in bars],
            },
        )
    )
    fig.add_vline(x=0, line_width=1, line_color="#999")
    fig.update_layout(
        height=max(300, 30 * len(bars) + 80),
        xaxis={"tickformat": "+.0%", "title": "change of share, B − A (95% interval); ★ significant"},
        yaxis={"autorange": "reversed"},
        margin={"t": 10, "l": 10, "r": 10, "b": 10},
        showlegend=False,
    )
    st.plotly_chart(fig, key="cmp_chart")
