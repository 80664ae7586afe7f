"""``diff`` as a table for the terminal and as a chart of the changes with their intervals."""

from __future__ import annotations

from pathlib import Path

from bailclio import atomic
from bailclio.errors import UserError
from bailclio.taxonomy.diff import UNASSIGNED, DiffResult, Share


def _pct(s: Share) -> str:
    return f"{100 * s.share:5.1f}% [{100 * s.ci_low:4.1f},{100 * s.ci_high:5.1f}]"


def _change(change: float, lo: float, hi: float, star: bool) -> str:
    return f"{100 * change:+6.1f} [{100 * lo:+5.1f},{100 * hi:+5.1f}]" + ("*" if star else " ")


def format_table(result: DiffResult) -> str:
    a, b = result.a, result.b
    ids = [m.a_id for m in result.matched] + [m.b_id for m in result.matched]
    ids += [x.id for x in result.only_in_a + result.only_in_b] + [n.id for n in result.nodes or []]
    w = max([6, *(len(i) for i in ids if i != UNASSIGNED)])
    lines = [
        f"A: {a['source']} ({a['rows']} rows)    B: {b['source']} ({b['rows']} rows)    level {result.level}"
    ]
    lines += [f"note: {n}" for n in result.notes]
    head = f"{'share A [95% CI]':>22} {'share B [95% CI]':>22} {'change pp [95% CI]':>25}"
    if result.nodes is not None:
        pl_ = result.placement or {}
        lines += [
            "",
            f"On A's taxonomy (both sides' rows placed in it by kNN, k={pl_.get('k')}; "
            f"{pl_.get('a_unassigned')} of A's and {pl_.get('b_unassigned')} of B's rows beyond the "
            f"distance threshold {pl_.get('distance_threshold', 0):.3f} are unassigned):",
            f"{'node':<{w}} {head} {'q':>6}  name",
        ]
        for n in result.nodes:
            ch = _change(n.change, n.change_ci_low, n.change_ci_high, n.significant)
            lines.append(f"{n.id:<{w}.{w}} {_pct(n.a):>22} {_pct(n.b):>22} {ch:>25} {n.q:6.3f}  {n.name}")
        lines.append(f"{len(result.significant)} significant changes (* : Benjamini-Hochberg q <= 0.05)")
    lines += ["", "Each run's own taxonomy, nodes matched (extra information):"]
    lines.append(f"{'A':<{w}} {'B':<{w}} {'sim':>5} {head} {'gap':>6}  status, name (A -> B)")
    for m in result.matched:
        ch = _change(m.change, m.change_ci_low, m.change_ci_high, m.significant)
        gap = "" if m.partition_gap is None else f"{100 * m.partition_gap:+6.1f}"
        names = m.a_name if m.a_name == m.b_name else f"{m.a_name} -> {m.b_name}"
        lines.append(
            f"{m.a_id:<{w}.{w}} {m.b_id:<{w}.{w}} {m.similarity:5.2f} {_pct(m.a):>22} {_pct(m.b):>22} "
            f"{ch:>25} {gap:>6}  {m.status}, {names}"
        )
    for title, items in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        lines.append(f"\n{title}: {len(items)}")
        for x in items:
            sh = Share(x.count, x.share, x.ci_low, x.ci_high)
            lines.append(f"  {x.id:<{w}} {_pct(sh):>22}  best similarity {x.best_similarity:.2f}  {x.name}")
    lines.append(
        "\nsim: similarity of the matched nodes (below "
        f"{result.uncertain_below:.2f}: uncertain, never a change); gap: the part of a pair's change "
        "that is only the partition moving (pp); * on a pair: its A node changed significantly on "
        "A's taxonomy, in the same direction"
    )
    return "\n".join(lines)


def _bars(result: DiffResult, top: int) -> list[tuple[str, float, float, float]]:
    if result.nodes is not None:
        items = [(n.name, n.change, n.change_ci_low, n.change_ci_high) for n in result.nodes]
    else:
        items = [
            (
                m.b_name if m.a_name == m.b_name else f"{m.a_name} -> {m.b_name}",
                m.change,
                m.change_ci_low,
                m.change_ci_high,
            )
            for m in result.matched
            if m.status == "matched"
        ]
    return sorted(items, key=lambda it: -abs(it[1]))[:top][::-1]


def plot(result: DiffResult, out: str | Path, top: int = 15) -> Path:
    """The largest share changes on A's taxonomy as bars with their 95% intervals."""
    import matplotlib  # heavy: loaded only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = _bars(result, top)
    fig, ax = plt.subplots(figsize=(9, 0.4 * max(len(items), 3) + 1.2))
    values = [100 * v for _, v, _, _ in items]
    errors = [[100 * (v - lo) for _, v, lo, _ in items], [100 * (hi - v) for _, v, _, hi in items]]
    ax.barh(
        [name[:60] for name, *_ in items],
        values,
        xerr=errors,
        capsize=3,
        color=["#c0392b" if v < 0 else "#2e86c1" for v in values],
    )
    ax.axvline(0, color="black", linewidth=0.8)
    where = "on A's taxonomy" if result.nodes is not None else "matched nodes"
    ax.set_xlabel("change in share of conversations, B - A (percentage points, 95% interval)")
    ax.set_title(f"Largest changes at level {result.level} ({where})")
    fig.tight_layout()
    p = Path(out)
    fmt = p.suffix.lstrip(".").lower() or "png"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_file(p, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    except ValueError as exc:  # a format matplotlib cannot write
        raise UserError(f"{p}: cannot write a plot: {exc}".splitlines()[0]) from exc
    finally:
        plt.close(fig)
    return p
