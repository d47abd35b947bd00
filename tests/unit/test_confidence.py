"""Bootstrap intervals: seeded, containing the estimate, and narrowing with more data."""

import pytest

import random

from fact_locator.confidence import PeakInterval, aie_interval, ate_interval, bootstrap_mean, peak_aie_interval
from tests.support.trace_factory import make_trace


def traces_with_last_subject_curves(curves: list[tuple[float, float]]) -> list:
    """One trace per (layer 0, layer 1) MLP IE at the last subject token (token 2)."""
    return [make_trace(fact_id=f"f{i}", ie={"mlp": ((0.0, 0.0, a, 0.0, 0.0), (0.0, 0.0, b, 0.0, 0.0))})
            for i, (a, b) in enumerate(curves)]


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


def test_aie_intervals_do_not_depend_on_the_order_of_the_facts():
    rng = random.Random(1)
    traces = traces_with_last_subject_curves([(rng.random(), rng.random()) for _ in range(12)])
    shuffled = traces[:]
    rng.shuffle(shuffled)
    assert shuffled != traces
    assert aie_interval(traces, "mlp", "last_subject") == aie_interval(shuffled, "mlp", "last_subject")
    assert peak_aie_interval(traces, "mlp", "last_subject") == peak_aie_interval(shuffled, "mlp", "last_subject")


def test_one_layer_peaking_in_every_resample_gives_the_fixed_layer_interval():
    # Every fact's IE is larger at layer 1: every resample peaks there.
    traces = traces_with_last_subject_curves([(0.1, 0.3), (0.05, 0.5), (0.2, 0.25), (0.0, 0.4), (0.1, 0.6)])
    peak = peak_aie_interval(traces, "mlp", "last_subject")
    assert peak.layer == 1 and peak.layer_share == 1.0
    assert peak.interval == aie_interval(traces, "mlp", "last_subject")


def test_the_peak_interval_re_chooses_the_layer_and_covers_that_choice():
    """Layer 0 is steady at 0.30; layer 1 averages 0.29 but varies a lot, so some resamples
    peak there, higher. The fixed-layer interval at layer 0 is a point; the peak's is not."""
    traces = traces_with_last_subject_curves([(0.3, b) for b in (0.0, 0.05, 0.6, 0.65, 0.1, 0.35, 0.27, 0.3)])
    fixed = aie_interval(traces, "mlp", "last_subject")
    peak = peak_aie_interval(traces, "mlp", "last_subject")
    assert fixed.low == fixed.high == pytest.approx(0.3)
    assert peak.layer == 0 and 0.2 < peak.layer_share < 0.8
    assert peak.interval.estimate == fixed.estimate
    assert peak.interval.high - peak.interval.low > fixed.high - fixed.low + 0.05
    assert PeakInterval.from_dict(peak.to_dict()) == peak


def test_each_end_of_the_peak_interval_is_at_least_the_fixed_layers():
    """Each resample's peak is at least its value at the fixed layer (same resamples)."""
    rng = random.Random(7)
    for _ in range(20):
        traces = traces_with_last_subject_curves([(rng.gauss(0.3, 0.1), rng.gauss(0.28, 0.2)) for _ in range(10)])
        fixed = aie_interval(traces, "mlp", "last_subject", resamples=500)
        peak = peak_aie_interval(traces, "mlp", "last_subject", resamples=500).interval
        assert peak.low >= fixed.low - 1e-12 and peak.high >= fixed.high - 1e-12
