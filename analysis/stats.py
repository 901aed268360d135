"""Statistics over seeds: mean, standard error (ddof = 1), n, and two-sided t-tests (paired or Welch).

The tests are scipy.stats' (ttest_rel, ttest_ind with equal_var=False); only the zero-variance cases, where
scipy warns and the answer is exact, are settled here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

# scipy.stats is imported inside the tests: it takes most of a second, and a report without --test needs none

DDOF = 1
SE_FORMULA = "s.e. = s/\u221an"  # s: sample standard deviation over seeds with ddof = 1


@dataclass(frozen=True)
class Summary:
    """Mean, standard error and count of one table cell."""

    mean: float
    """Mean over the finished runs with a finite value (nan when none has one)."""
    se: float | None
    """Standard error s/sqrt(n), s with ddof = 1; None when n <= 1 (a single run has no spread)."""
    n: int
    """Number of finished runs with a finite value: the runs the mean is taken over."""
    non_finite: int = 0
    """Finished runs whose value is NaN or infinite: left out of the mean and of n, and shown in the cell."""

    @property
    def total(self) -> int:
        """Every finished run, finite or not."""
        return self.n + self.non_finite


def finite_only(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a non-empty sequence of values (one per seed); non-finite values are counted, not averaged."""
    if len(values) == 0:
        raise ValueError("summarize needs at least one value")
    finite = finite_only(values)
    bad = len(values) - len(finite)
    series = pd.Series(finite, dtype="float64")
    n = len(series)
    if n == 0:
        return Summary(math.nan, None, 0, bad)
    if n == 1:
        return Summary(float(series.iloc[0]), None, 1, bad)
    return Summary(float(series.mean()), float(series.sem(ddof=DDOF)), n, bad)


@dataclass(frozen=True)
class TTest:
    """A two-sided t-test of one row against its reference row."""

    kind: str
    """'paired' (same seeds in both rows, differences per seed) or 'welch' (unequal variances)."""
    t: float
    """The t statistic (row minus reference)."""
    df: float
    """Degrees of freedom (Welch-Satterthwaite for 'welch')."""
    p: float
    """Two-sided p-value."""


def two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic with `df` degrees of freedom (df may be fractional)."""
    from scipy.stats import t as student_t

    if math.isnan(t):
        return 1.0  # both samples constant and equal: no evidence of a difference
    return float(min(1.0, 2.0 * student_t.sf(abs(t), df)))


def _constant(values: Sequence[float]) -> bool:
    return all(v == values[0] for v in values)


def _quietly(test, *args, **kwargs):
    # scipy warns of "catastrophic cancellation" whenever one sample is constant; its variance 0 is exact then
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        return test(*args, **kwargs)


def _no_spread(kind: str, diff: float, df: float) -> TTest:
    # zero variance: the answer is exact (t = ±inf, or nan when equal), where scipy gives p = nan for t = nan
    t = math.nan if diff == 0 else math.copysign(math.inf, diff)
    return TTest(kind, t, df, two_sided_p(t, df))


def paired_t(row: Sequence[float], ref: Sequence[float]) -> TTest:
    """Paired t-test on per-seed differences row[i] - ref[i] (needs >= 2 pairs)."""
    if len(row) != len(ref) or len(row) < 2:
        raise ValueError("a paired t-test needs two equally long samples of at least 2 values")
    diffs = [a - b for a, b in zip(row, ref)]
    if _constant(diffs):
        return _no_spread("paired", diffs[0], len(diffs) - 1)
    from scipy import stats as scipy_stats

    res = _quietly(scipy_stats.ttest_rel, row, ref)
    return TTest("paired", float(res.statistic), int(res.df), float(res.pvalue))


def welch_t(row: Sequence[float], ref: Sequence[float]) -> TTest:
    """Welch's unequal-variance t-test (needs >= 2 values in each sample)."""
    if len(row) < 2 or len(ref) < 2:
        raise ValueError("Welch's t-test needs at least 2 values in each sample")
    if _constant(row) and _constant(ref):  # Welch-Satterthwaite is 0/0: fall back to the pooled df
        return _no_spread("welch", row[0] - ref[0], float(len(row) + len(ref) - 2))
    from scipy import stats as scipy_stats

    res = _quietly(scipy_stats.ttest_ind, row, ref, equal_var=False)
    return TTest("welch", float(res.statistic), float(res.df), float(res.pvalue))


def compare(row: dict[int, float], ref: dict[int, float]) -> TTest | None:
    """Test a row against its reference, both given as {seed: value}.

    Paired over seeds when both rows ran exactly the same seeds (the sweeps' default), Welch otherwise;
    None when there are too few values for either test. Seeds with a non-finite value are left out.
    """
    if set(row) == set(ref):  # paired: a seed counts only when finite in both rows
        row, ref = ({s: v for s, v in side.items() if math.isfinite(row[s]) and math.isfinite(ref[s])}
                    for side in (row, ref))
    else:
        row, ref = ({s: v for s, v in side.items() if math.isfinite(v)} for side in (row, ref))
    if set(row) == set(ref) and len(row) >= 2:
        seeds = sorted(row)
        return paired_t([row[s] for s in seeds], [ref[s] for s in seeds])
    if len(row) >= 2 and len(ref) >= 2:
        return welch_t(list(row.values()), list(ref.values()))
    return None


P_FLOOR = 0.001
"""p-values below this print as `p < 0.001`: a t-test's tail is not measured more finely than that here."""


def format_p(p: float) -> str:
    """A p-value as a reader quotes it: `p = 0.034`, `p < 0.001`."""
    return f"p < {P_FLOOR:g}" if p < P_FLOOR else f"p = {p:.3f}"
