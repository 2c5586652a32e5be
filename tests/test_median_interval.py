"""The benchmarks' confidence interval for a median
(`benchmarks/median_interval.py`): published tables, simulated coverage, and
the boundaries of what it accepts."""

import numpy as np
import pytest

from tests.example_modules import load_benchmark

_module = load_benchmark("median_interval")
median_interval = _module.median_interval
paired_ratios = _module.paired_ratios


@pytest.mark.parametrize("n, k", [
    # The sign test's 95% interval is x_(k) to x_(n+1-k), k as tabulated
    # for the binomial with p = 1/2 (checked by hand: for n = 20,
    # 2 P(B <= 5) = 0.041 <= 0.05 < 2 P(B <= 6) = 0.115).
    (6, 1), (8, 1), (9, 2), (10, 2), (11, 2), (12, 3), (15, 4), (20, 6),
    (25, 8), (30, 10),
])
def test_interval_uses_the_tabulated_order_statistics(n, k):
    values = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))
    assert median_interval(list(values)) == (k, n + 1 - k)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_too_few_values_give_no_interval(n):
    # With 5 values even [min, max] misses the median with probability
    # 2 / 2^5 = 6.25% > 5%.
    assert median_interval([1.0] * n) is None


def test_a_lower_level_gives_an_interval_sooner():
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0], level=0.9) == (1.0, 5.0)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 95])
def test_level_outside_zero_one_is_refused(level):
    with pytest.raises(ValueError, match="level"):
        median_interval([1.0] * 10, level=level)


@pytest.mark.parametrize("n", [7, 12, 41])
def test_simulated_coverage_is_at_least_95_percent_and_not_loose(n):
    # Skewed draws, like timings: lognormal with median exp(0) = 1.
    rng = np.random.default_rng(n)
    draws = rng.lognormal(0.0, 0.5, size=(20000, n))
    intervals = np.array([median_interval(list(row)) for row in draws])
    covered = (intervals[:, 0] <= 1.0) & (1.0 <= intervals[:, 1])
    # The exact coverage is >= 0.95; 20,000 draws resolve it to +-0.003.
    assert covered.mean() >= 0.95 - 0.005
    # The next tighter pair of order statistics would fall below 95%: the
    # interval is the tightest that keeps the level.
    ordered = np.sort(draws, axis=1)
    k = int(np.searchsorted(ordered[0], intervals[0, 0])) + 1
    tighter = (ordered[:, k] <= 1.0) & (1.0 <= ordered[:, n - k - 1])
    assert tighter.mean() < 0.95


def test_paired_ratios_divide_call_by_call_so_slow_spells_cancel():
    spells = np.array([1.0, 3.0, 1.0, 1.0, 3.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    ratios, median, low, high = paired_ratios(list(2 * spells), list(spells))
    assert ratios == [2.0] * 10
    assert (median, low, high) == (2.0, 2.0, 2.0)
    # The other way round, the ratios invert.
    assert paired_ratios(list(spells), list(2 * spells))[1] == 0.5


def test_paired_ratios_give_the_median_and_its_interval():
    # Ratios 1..10 in a shuffled order: median 5.5, interval x_(2), x_(9).
    ratios = np.random.default_rng(0).permutation(np.arange(1.0, 11.0))
    denominators = np.random.default_rng(1).uniform(1.0, 2.0, 10)
    got, median, low, high = paired_ratios(list(ratios * denominators),
                                           list(denominators))
    np.testing.assert_allclose(got, ratios)
    assert (median, low, high) == pytest.approx((5.5, 2.0, 9.0))
    # Five repeats are too few for a 95% interval.
    assert paired_ratios([2.0] * 5, [1.0] * 5)[2:] == (None, None)


@pytest.mark.parametrize("numerators, denominators", [
    ([1.0, 2.0], [1.0]), ([], []),
])
def test_paired_ratios_refuse_unpaired_timings(numerators, denominators):
    with pytest.raises(ValueError, match="numerators"):
        paired_ratios(numerators, denominators)
