"""Intervals of a drop between two runs (fact_locator/change_intervals.py)."""

import math

import pytest

from fact_locator.change_intervals import bootstrap_drop, welch_drop
from fact_locator.tracing.uncertainty import EffectInterval, t_quantile


def _interval(estimate: float, se: float, n: int) -> EffectInterval:
    half = t_quantile(0.975, n - 1) * se
    return EffectInterval(estimate, estimate - half, estimate + half, se, 0.95, n)


def test_welch_with_equal_spreads_is_the_pooled_t_interval():
    drop = welch_drop(_interval(0.7, 0.01, 10), _interval(0.5, 0.01, 10))
    half = t_quantile(0.975, 18) * 0.01 * math.sqrt(2)  # Welch's df is 2(n - 1) here
    assert drop.estimate == pytest.approx(0.2)
    assert (drop.low, drop.high) == pytest.approx((0.2 - half, 0.2 + half))


def test_welch_takes_the_noisier_runs_degrees_of_freedom_when_it_dominates():
    drop = welch_drop(_interval(0.7, 1e-6, 50), _interval(0.5, 0.05, 5))
    assert drop.high - drop.estimate == pytest.approx(t_quantile(0.975, 4) * 0.05, rel=1e-3)


def test_runs_without_spread_give_the_point():
    drop = welch_drop(_interval(0.7, 0.0, 10), _interval(0.5, 0.0, 10))
    assert (drop.low, drop.estimate, drop.high) == pytest.approx((0.2, 0.2, 0.2))


def test_the_bootstrap_of_a_drop_does_not_depend_on_the_facts_order():
    before, after = [0.2, 0.9, 0.5, 0.6], [0.1, 0.8, 0.4, 0.6]
    drop = bootstrap_drop(before, after)
    assert drop == bootstrap_drop(before[::-1], after[::-1])
    assert drop.estimate == pytest.approx(0.075) and drop.low < drop.estimate < drop.high
    with pytest.raises(ValueError, match="needs values on both sides"):
        bootstrap_drop([], after)
