"""Small statistics shared by detection and taxonomy comparison: Wilson intervals, tests of
k x 2 tables, Benjamini-Hochberg correction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate k/n (95% by default); (0, 1) when n is 0.

    >>> [round(x, 4) for x in wilson_interval(5, 100)]
    [0.0215, 0.1118]
    >>> wilson_interval(0, 98)[0], wilson_interval(7, 7)[1]
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, centre - half)  # exact ends where rounding would leave a crumb
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class TableTest:
    """A test of independence on a k x 2 table: its p-value and which test gave it."""

    p: float
    method: str  # "chi-square", "fisher-exact", "fisher-monte-carlo" or "none" (nothing to test)


MIN_EXPECTED = 5.0  # the chi-square approximation is used when every expected count reaches this
MONTE_CARLO_RESAMPLES = 9999


def k_by_2_test(table: Any, *, seed: int = 0) -> TableTest:
    """Whether the rows of a k x 2 table of counts (one row per group: [in, out]) differ.

    Chi-square (no continuity correction) when every expected count is at least 5; otherwise
    Fisher's exact test for two groups, and for more groups the Fisher statistic with a
    Monte-Carlo p-value (9,999 tables with the observed margins, seeded, so reproducible).
    Groups with no rows are left out; a table where one column or all but one row is empty has
    nothing to test (p = 1).

    >>> k_by_2_test([[30, 70], [60, 40]]).method
    'chi-square'
    >>> round(k_by_2_test([[3, 7], [0, 10]]).p, 4), k_by_2_test([[3, 7], [0, 10]]).method
    (0.2105, 'fisher-exact')
    >>> k_by_2_test([[0, 10], [0, 12]])
    TableTest(p=1.0, method='none')
    """
    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 2 or (t < 0).any():
        raise ValueError(f"expected a k x 2 table of non-negative counts, got shape {t.shape}")
    return contingency_test(t, seed=seed)


def contingency_test(table: Any, *, seed: int = 0) -> TableTest:
    """Whether the rows of an r x c table of counts differ in how they spread over the columns
    (e.g. groups x a parent node's children): the test :func:`k_by_2_test` makes, for any number
    of columns. Empty rows and columns are left out; fewer than two of either: p = 1 ("none").

    >>> contingency_test([[20, 20, 20], [20, 20, 20]]).p
    1.0
    >>> contingency_test([[30, 5, 5], [5, 5, 30]]).p < 0.001, contingency_test([[3, 0, 1], [0, 4, 1]]).method
    (True, 'fisher-monte-carlo')
    """
    from scipy import stats

    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or (t < 0).any():
        raise ValueError(f"expected a table of non-negative counts, got shape {t.shape}")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0] if t.size else t
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 2:
        return TableTest(1.0, "none")
    expected = np.outer(t.sum(axis=1), t.sum(axis=0)) / t.sum()
    if expected.min() >= MIN_EXPECTED:
        res = stats.chi2_contingency(t, correction=False)
        return TableTest(float(res.pvalue), "chi-square")
    if t.shape == (2, 2):
        return TableTest(float(stats.fisher_exact(t).pvalue), "fisher-exact")
    method = stats.MonteCarloMethod(n_resamples=MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(seed))
    return TableTest(float(stats.fisher_exact(t, method=method).pvalue), "fisher-monte-carlo")


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the order given: a test is significant
    at false discovery rate ``a`` when its q is at most ``a``.

    >>> [round(q, 3) for q in benjamini_hochberg([0.01, 0.04, 0.03, 0.5])]
    [0.04, 0.053, 0.053, 0.5]
    """
    if len(pvalues) == 0:
        return []
    from scipy import stats

    return [float(q) for q in stats.false_discovery_control(np.asarray(pvalues, dtype=float), method="bh")]


def composition_test(counts: Sequence[int], reference: Sequence[float], *, seed: int = 0) -> TableTest:
    """Whether one node's rows per group (``counts``) depart from a reference mix of the groups
    (``reference``: probabilities, or any non-negative weights).

    Chi-square goodness of fit when every expected count is at least 5; otherwise an exact
    binomial test for two groups, and for more a Monte-Carlo p-value (9,999 multinomial draws,
    seeded). A group the reference lacks makes any node that has it differ (p = 0).

    >>> composition_test([30, 70], [0.5, 0.5]).p < 0.001, composition_test([3, 4], [0.5, 0.5]).method
    (True, 'binomial-exact')
    >>> composition_test([0, 5, 2], [0.5, 0.5, 0.0]).p
    0.0
    """
    from scipy import stats

    c = np.asarray(counts, dtype=np.int64)
    w = np.asarray(reference, dtype=float)
    if c.shape != w.shape or (c < 0).any() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("counts and reference: one non-negative value per group")
    if (c[w == 0] > 0).any():
        return TableTest(0.0, "absent-from-reference")
    c, w = c[w > 0], w[w > 0] / w[w > 0].sum()
    n = int(c.sum())
    if n == 0 or len(c) < 2:
        return TableTest(1.0, "none")
    expected = n * w
    if expected.min() >= MIN_EXPECTED:
        return TableTest(float(stats.chisquare(c, expected).pvalue), "chi-square-fit")
    if len(c) == 2:
        return TableTest(float(stats.binomtest(int(c[0]), n, float(w[0])).pvalue), "binomial-exact")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, w, size=MONTE_CARLO_RESAMPLES)
    observed = float((((c - expected) ** 2) / expected).sum())
    simulated = (((draws - expected) ** 2) / expected).sum(axis=1)
    p = (1 + int((simulated >= observed - 1e-12).sum())) / (MONTE_CARLO_RESAMPLES + 1)
    return TableTest(p, "fit-monte-carlo")
