"""The report's figures: rates with their 95% intervals, one point per model, as SVG data URIs.

An SVG shown through ``<img src="data:image/svg+xml;base64,...">`` cannot run scripts or load
anything, and matplotlib draws text as paths, so names from the data stay inert.
"""

from __future__ import annotations

import base64
import io

import polars as pl

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


def plain(text: str) -> str:
    """Text for matplotlib, where ``$`` would start mathematics."""
    return str(text).replace("$", r"\$")


def interval_plot(frame: pl.DataFrame, label_col: str, title: str, xlabel: str) -> str:
    """Points at ``rate`` with ``ci_low``..``ci_high`` bars, one row per distinct ``label_col``
    value and one series per ``model``; an SVG data URI."""
    # matplotlib is heavy: imported when a report is drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(frame[label_col].to_list()))
    models = list(dict.fromkeys(frame["model"].to_list()))
    height = 1.2 + 0.32 * len(labels) * max(1, min(len(models), 4))
    fig, ax = plt.subplots(figsize=(11, height))
    step = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        sub = frame.filter((pl.col("model") == model) & pl.col("rate").is_not_null())
        ys = [labels.index(v) - 0.4 + step * (i + 0.5) for v in sub[label_col].to_list()]
        rates = sub["rate"].to_list()
        lo = [r - a for r, a in zip(rates, sub["ci_low"].to_list(), strict=True)]
        hi = [b - r for r, b in zip(rates, sub["ci_high"].to_list(), strict=True)]
        ax.errorbar(
            rates,
            ys,
            xerr=[lo, hi],
            fmt=MARKERS[i % len(MARKERS)],
            capsize=3,
            label=plain(model)[:60],
        )
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([plain(v)[:60] for v in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(plain(xlabel))
    ax.set_title(plain(title))
    ax.grid(axis="x", alpha=0.3)
    if models:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="model")
    fig.tight_layout()
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "bailclio"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
