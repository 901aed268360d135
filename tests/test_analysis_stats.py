"""Statistics: hand-computed means and standard errors, and t-test p-values against known values."""

from __future__ import annotations

import math

import pytest
from scipy.special import betainc
from scipy.stats import t as student_t

from analysis.stats import compare, paired_t, summarize, two_sided_p, welch_t

t_cdf = student_t.cdf  # the distribution analysis/stats.py takes its p-values from


def t_density(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def p_by_integration(t: float, df: float, steps: int = 20000) -> float:
    """Two-sided p from Simpson's rule on the density: an independent route to the same number."""
    h = abs(t) / steps
    s = t_density(0, df) + t_density(abs(t), df)
    s += sum((4 if i % 2 else 2) * t_density(i * h, df) for i in range(1, steps))
    return 1.0 - 2.0 * s * h / 3.0


def test_summary_by_hand():
    s = summarize([70.0, 72.0])  # s = sqrt(2), s.e. = sqrt(2)/sqrt(2) = 1
    assert s.mean == pytest.approx(71.0) and s.se == pytest.approx(1.0) and s.n == 2
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])  # var (ddof 1) = 10/4 = 2.5, s.e. = sqrt(2.5/5)
    assert s.mean == pytest.approx(3.0) and s.se == pytest.approx(math.sqrt(0.5)) and s.n == 5


def test_single_run_has_no_standard_error():
    s = summarize([73.9])
    assert s.mean == 73.9 and s.se is None and s.n == 1
    with pytest.raises(ValueError):
        summarize([])


def test_appendix_standard_errors_fit_five_runs_with_ddof_1():
    # the appendix's 0.2236 % is sqrt(0.05): e.g. five runs with sum of squared deviations 1.0
    values = [73.9 + d for d in (-0.5, -0.5, 0.0, 0.5, 0.5)]
    assert summarize(values).se == pytest.approx(0.2236, abs=1e-4)


def test_incomplete_beta_closed_forms():
    # I_x(2, 3) = sum_{j=2..4} C(4, j) x^j (1-x)^(4-j); I_x(1, b) = 1 - (1-x)^b
    x = 0.4
    assert betainc(2, 3, x) == pytest.approx(6 * x**2 * (1 - x)**2 + 4 * x**3 * (1 - x) + x**4, rel=1e-12)
    assert betainc(1, 3.5, 0.7) == pytest.approx(1 - 0.3**3.5, rel=1e-12)
    assert betainc(0.5, 0.5, 0.5) == pytest.approx(0.5, rel=1e-12)


def test_t_cdf_against_closed_forms_and_tables():
    assert t_cdf(1.0, 1) == pytest.approx(0.75, rel=1e-12)  # Cauchy: 1/2 + atan(t)/pi
    for t in (-3.0, -0.4, 0.0, 1.7):
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    # two-sided 5 % and 1 % critical values from published t tables
    for t, df, p in ((12.706205, 1, 0.05), (2.776445, 4, 0.05), (2.228139, 10, 0.05), (3.169273, 10, 0.01),
                     (2.570582, 5, 0.05), (1.959964, 1e7, 0.05)):
        assert two_sided_p(t, df) == pytest.approx(p, rel=1e-5)


@pytest.mark.parametrize("t,df", [(0.8, 3.2347), (2.1, 7.5), (-1.3, 1.6), (4.0, 30.0)])
def test_fractional_df_against_numerical_integration(t, df):
    assert two_sided_p(t, df) == pytest.approx(p_by_integration(t, df), abs=1e-7)


def test_paired_t_by_hand():
    row, ref = [71.0, 72.5, 73.0, 72.0], [70.0, 72.0, 71.5, 71.5]
    # differences 1.0, 0.5, 1.5, 0.5: mean 0.875, var = (0.015625+0.140625+0.390625+0.140625)/3 = 0.229167
    res = paired_t(row, ref)
    t = 0.875 / math.sqrt(0.6875 / 3 / 4)
    assert res.kind == "paired" and res.df == 3 and res.t == pytest.approx(t)
    assert res.p == pytest.approx(p_by_integration(t, 3), abs=1e-7)


def test_welch_t_by_hand():
    res = welch_t([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0])
    # s1 = (5/3)/4, s2 = 4/3; t = -1.5/sqrt(1.75); df = 1.75^2 / (s1^2/3 + s2^2/2)
    s1, s2 = 5 / 12, 4 / 3
    assert res.kind == "welch"
    assert res.t == pytest.approx(-1.5 / math.sqrt(1.75))
    assert res.df == pytest.approx(1.75**2 / (s1**2 / 3 + s2**2 / 2))
    assert res.p == pytest.approx(p_by_integration(res.t, res.df), abs=1e-7)


def test_compare_pairs_on_matching_seeds_else_welch():
    assert compare({1: 71.0, 2: 72.5, 3: 73.0}, {1: 70.0, 2: 72.0, 3: 71.5}).kind == "paired"
    assert compare({1: 71.0, 2: 72.5, 3: 73.0}, {4: 70.0, 5: 72.0, 6: 71.5}).kind == "welch"
    assert compare({1: 71.0}, {1: 70.0}) is None


def test_identical_rows_give_p_one():
    res = paired_t([70.0, 71.0], [70.0, 71.0])
    assert res.p == 1.0
