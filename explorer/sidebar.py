"""The sidebar: the run picker (held to the allowed folders), the view, the selected node, filters."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from bailclio import rundir
from bailclio.errors import UserError
from bailclio.explorer import data as D
from bailclio.explorer import widgets as W
from bailclio.explorer.access import is_allowed

VIEWS = ("Taxonomy", "Map", "Node", "Conversation", "Search", "Compare", "Groups", "Curate", "Downloads")


def sidebar(roots: list[Path]) -> tuple[D.Explorer | None, list[str]]:
    sb = st.sidebar
    sb.title("bailclio explorer")
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
    labels = {p: D.run_label(W.describe_cached(p, D.run_signature(p))) for p in runs}
    if st.session_state.get("run_path") not in runs:
        st.session_state["run_path"] = runs[0]
    sb.selectbox("Run", runs, key="run_path", format_func=lambda p: labels.get(p, p))
    with sb.expander(f"All runs ({len(runs)})"):
        rows = [W.describe_cached(p, D.run_signature(p)) for p in runs]
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
        ex = W.load(st.session_state["run_path"])
    except UserError as exc:
        st.error(f"Cannot open this run: {exc}")
        return None, runs
    except Exception as exc:  # noqa: BLE001 - the page shows one line, never a traceback
        st.error(
            f"Cannot open this run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return None, runs

    # Keep selections valid for this run before their widgets are created.
    ids = D.tree_order(ex.taxonomy)
    if st.session_state.get("node") not in ids:
        st.session_state["node"] = ""
    st.session_state.setdefault("view", VIEWS[0])
    sb.radio("View", VIEWS, key="view")
    sb.text_input("Find a node", key="node_find", placeholder="name, description, keyword or id")
    found = (st.session_state.get("node_find") or "").strip()
    if found:
        hits = set(D.search_nodes(ex, found)["id"].to_list()) | {st.session_state.get("node")}
        ids = [i for i in ids if i in hits]
    sb.selectbox(
        f"Selected node ({len(ids)} shown)" if found else "Selected node",
        ["", *ids],
        key="node",
        format_func=lambda i: "(none)" if not i else ("  " * ex.node(i).level) + W.node_label(ex, i),
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
        format_func=lambda i: W.node_label(ex, i),
    )
    st.radio("Outliers", ["include", "exclude", "only"], key="f_outliers", horizontal=True)
    if ex.has_refusal:
        st.radio("Refusal", ["any", "refused", "not refused"], key="f_refused", horizontal=True)
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
        refused=ss.get("f_refused", "any") if ex.has_refusal else "any",
    )
