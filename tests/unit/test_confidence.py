"""Bootstrap intervals: seeded, containing the estimate, and narrowing with more data."""

import pytest

from fact_locator.confidence import aie_interval, ate_interval, bootstrap_mean
from tests.support.trace_factory import make_trace


def test_the_interval_contains_the_mean_and_is_reproducible():
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.35, 0.15]
    a = bootstrap_mean(values, seed=3)
    assert a == bootstrap_mean(values, seed=3)
    assert a.estimate == pytest.approx(sum(values) / len(values))
    assert a.low <= a.estimate <= a.high
    assert a.level == 0.95 and a.n == 7


def test_the_interval_does_not_depend_on_the_order_of_the_facts():
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.35, 0.15, 0.9]
    assert bootstrap_mean(values) == bootstrap_mean(list(reversed(values))) == bootstrap_mean(sorted(values))
    traces = [make_trace(p_clean=p) for p in (0.5, 0.9, 0.6, 0.7, 0.8)]
    assert ate_interval(traces) == ate_interval(traces[::-1])


def test_more_data_gives_a_narrower_interval():
    few = bootstrap_mean([0.1, 0.5] * 3)
    many = bootstrap_mean([0.1, 0.5] * 300)
    assert many.high - many.low < (few.high - few.low) / 5


def test_a_constant_has_a_zero_width_interval():
    assert bootstrap_mean([0.2] * 5).low == pytest.approx(0.2)


def test_ate_and_aie_intervals_over_facts():
    traces = [make_trace(p_clean=p) for p in (0.5, 0.6, 0.7, 0.8)]
    ate = ate_interval(traces)
    assert ate.estimate == pytest.approx(0.6)  # mean p_clean 0.65 - p_corrupt 0.05
    aie = aie_interval(traces, "mlp", "last_subject")
    assert aie.estimate == pytest.approx(0.35)  # layer 0 peaks at the last subject token


def test_bad_levels_and_empty_data_are_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        bootstrap_mean([1.0], level=95)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean([])
