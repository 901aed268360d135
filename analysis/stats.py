"""Statistics over seeds: mean, standard error (ddof = 1), n, and two-sided t-tests (paired or Welch).

scipy is not a dependency, so Student's t CDF is computed here from the regularized incomplete beta
function (a continued fraction evaluated with the modified Lentz method).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

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


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Lentz's method on the standard continued fraction of I_x(a, b); converges fast for x < (a+1)/(a+b+2)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) keeps the fraction in its fast-converging range
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom (df may be fractional)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def two_sided_p(t: float, df: float) -> float:
    if math.isnan(t):
        return 1.0  # both samples constant and equal: no evidence of a difference
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    return mean, math.fsum((v - mean) ** 2 for v in values) / (n - DDOF)


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return math.nan if num == 0 else math.copysign(math.inf, num)


def paired_t(row: Sequence[float], ref: Sequence[float]) -> TTest:
    """Paired t-test on per-seed differences row[i] - ref[i] (needs >= 2 pairs)."""
    if len(row) != len(ref) or len(row) < 2:
        raise ValueError("a paired t-test needs two equally long samples of at least 2 values")
    diffs = [a - b for a, b in zip(row, ref)]
    mean, var = _mean_var(diffs)
    t = _ratio(mean, math.sqrt(var / len(diffs)))
    df = len(diffs) - 1
    return TTest("paired", t, df, two_sided_p(t, df))


def welch_t(row: Sequence[float], ref: Sequence[float]) -> TTest:
    """Welch's unequal-variance t-test (needs >= 2 values in each sample)."""
    if len(row) < 2 or len(ref) < 2:
        raise ValueError("Welch's t-test needs at least 2 values in each sample")
    m1, v1 = _mean_var(row)
    m2, v2 = _mean_var(ref)
    s1, s2 = v1 / len(row), v2 / len(ref)
    t = _ratio(m1 - m2, math.sqrt(s1 + s2))
    if s1 + s2 > 0:
        df = (s1 + s2) ** 2 / (s1 ** 2 / (len(row) - 1) + s2 ** 2 / (len(ref) - 1))
    else:
        df = float(len(row) + len(ref) - 2)
    return TTest("welch", t, df, two_sided_p(t, df))


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
