"""Welch's t-test over seeds, written out so that the server needs no SciPy: the sample
variance, the difference of two means with its standard error and two-sided p-value
(Student's t by the regularized incomplete beta function), and the "0.009 ± 0.021" that
the sweep summary prints (app/domain/winners.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def sample_variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1 in the denominator)."""
    mean = sum(values) / len(values)
    return sum((value - mean) ** 2 for value in values) / (len(values) - 1)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test of two samples of two or more values each: (mean(b) - mean(a), the
    standard error of that difference, the two-sided p-value), as
    `scipy.stats.ttest_ind(b, a, equal_var=False)` gives it."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs two or more values on each side")
    difference = sum(b) / len(b) - sum(a) / len(a)
    var_a, var_b = sample_variance(a) / len(a), sample_variance(b) / len(b)
    error = math.sqrt(var_a + var_b)
    if error == 0:  # no spread at all: any difference is exact
        return difference, 0.0, 1.0 if difference == 0 else 0.0
    t = difference / error
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    return difference, error, _t_two_sided(t, df)


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom (df may be fractional)."""
    return min(1.0, max(0.0, _incomplete_beta(df / 2, 0.5, df / (df + t * t))))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction
    (Lentz's method), on the side of x where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < epsilon:
            break
    return result


def plus_minus(difference: float, error: float) -> str:
    """E.g. "0.009 ± 0.021": the error to two significant digits, the difference to the
    same decimal place."""
    if error <= 0 or not math.isfinite(error):
        return f"{difference:.3g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(error)))
    return f"{difference:.{decimals}f} ± {error:.{decimals}f}"
