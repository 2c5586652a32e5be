"""A confidence interval for a median that assumes no distribution (shared
by the scripts).

Timings on a shared host are skewed and jump between slow and fast spells,
so a mean +- standard error is misleading. The sign test's interval needs
only independent draws: the population median lies below the k-th smallest
of n values with probability P(B < k), B ~ Binomial(n, 1/2), and above the
k-th largest with the same probability. So `[x_(k), x_(n+1-k)]` covers it
with probability at least `1 - 2 P(B <= k - 1)`, and k is the largest that
keeps this at or above the level. (W. J. Conover, "Practical Nonparametric
Statistics", 3rd ed., section 3.2.)
"""

import math
import statistics


def _binomial_half_cdf(k, n):
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values, level=0.95):
    """`(low, high)`, an interval that covers the median of the distribution
    the values were drawn from with probability >= `level`; `None` when there
    are too few values for that level (fewer than 6 at 0.95).

    Args:
        values: Independent draws (for example, per-round timing ratios).
        level: Coverage probability, in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"Argument `level` must be in (0, 1). "
                         f"Received: level={level!r}")
    ordered = sorted(values)
    n = len(ordered)
    k = 0
    while k + 1 <= n // 2 and 2 * _binomial_half_cdf(k, n) <= 1 - level:
        k += 1
    if k == 0:
        return None
    return ordered[k - 1], ordered[n - k]


def paired_ratios(numerators, denominators, level=0.95):
    """The ratios of two timings taken back to back in each repeat, so that
    a slow spell of the machine cancels out of each ratio.

    Args:
        numerators, denominators: Seconds per repeat of the two things
            compared, in the order they were taken (equal lengths).
        level: Coverage probability of the interval, in (0, 1).

    Returns:
        `(ratios, median, low, high)`: the per-repeat ratios
        `numerators[i] / denominators[i]`, their median, and the median's
        interval from `median_interval` (`None, None` when there are too
        few repeats).
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(
            "Arguments `numerators` and `denominators` must be non-empty "
            f"and of equal length. Received: {len(numerators)} and "
            f"{len(denominators)} values")
    ratios = [n / d for n, d in zip(numerators, denominators)]
    low, high = median_interval(ratios, level) or (None, None)
    return ratios, statistics.median(ratios), low, high


def interval_text(low, high, draws="repeats"):
    """A table cell for an interval from `median_interval`: `low-high`, or
    why there is none (`None`: fewer than 6 `draws`)."""
    return f"n/a (< 6 {draws})" if low is None else f"{low:.2f}-{high:.2f}"
