"""A trace's uncertainty over its noise draws: t-intervals of TE and of every site's IE, the
probability that each site (and token category) holds the peak, the draws in the trace JSON,
and old traces without draws (their intervals are None)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.support.reference_check import SUBJECT_MIDDLE
from tests.support.tiny_models import tiny_loaded
from tests.support.trace_factory import make_trace_with_draws

from fact_locator.errors import ResultsError
from fact_locator.results import RunResults
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.tracer import Tracer
from fact_locator.tracing.uncertainty import t_quantile

OLD_RESULTS = Path(__file__).parent / "data" / "results_written_before_the_results_package.json"


def peaked_trace(n: int = 8, seed: int = 0) -> Trace:
    """Draws in which site (1, 2) is clearly the largest and (0, 2) a close second."""
    rng = np.random.default_rng(seed)
    restored = 0.1 + 0.001 * rng.standard_normal((2, 5, n))
    restored[1, 2] += 0.3
    restored[0, 2] += 0.28 + 0.05 * rng.standard_normal(n)
    return make_trace_with_draws([0.1] * n, restored)


# -- the numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "df", "table"), [(0.975, 1, 12.706205), (0.975, 3, 3.182446), (0.975, 9, 2.262157),
                                                (0.975, 63, 1.998341), (0.995, 15, 2.946713), (0.025, 9, -2.262157)])
def test_t_quantiles_match_the_tables(p: float, df: int, table: float) -> None:
    assert t_quantile(p, df) == pytest.approx(table, abs=2e-6)


def test_te_interval_is_the_t_interval_of_the_per_draw_te() -> None:
    trace = make_trace_with_draws([0.1, 0.2, 0.3, 0.4], np.full((2, 5, 4), 0.5))
    interval = trace.te_interval(0.95)
    sd = math.sqrt((0.15**2 + 0.05**2 + 0.05**2 + 0.15**2) / 3)
    assert interval is not None
    assert interval.estimate == pytest.approx(0.5) == pytest.approx(trace.te)
    assert interval.se == pytest.approx(sd / 2) == pytest.approx(trace.te_se())
    assert (interval.low, interval.high) == pytest.approx((0.5 - 3.182446 * sd / 2, 0.5 + 3.182446 * sd / 2), abs=1e-6)
    assert (interval.level, interval.n) == (0.95, 4)


def test_ie_intervals_are_of_paired_differences() -> None:
    """Restored and corrupted run of one draw share its noise: an IE that is the same in
    every draw has no uncertainty, however much the corrupted run itself varies."""
    corrupt = [0.1, 0.3, 0.2, 0.6]
    restored = np.array(corrupt)[None, None, :] + np.zeros((2, 5, 1))
    restored[1, 4] += 0.25  # the same IE in every draw
    trace = make_trace_with_draws(corrupt, restored)
    se = trace.ie_se("mlp")
    intervals = trace.ie_interval("mlp", level=0.9)
    assert se is not None and intervals is not None
    assert se[1][4] == pytest.approx(0.0, abs=1e-7)
    assert intervals[1][4].estimate == pytest.approx(0.25) == pytest.approx(trace.ie["mlp"][1][4])
    assert intervals[1][4].width == pytest.approx(0.0, abs=1e-6)
    assert trace.te_se() > 0.1  # the corrupted runs themselves do vary


def test_peak_probabilities_sum_to_one_by_site_and_by_category() -> None:
    trace = peaked_trace()
    by_site = trace.peak_probability("mlp", by="site", n_boot=500, seed=1)
    by_category = trace.peak_probability("mlp", by="category", n_boot=500, seed=1)
    assert by_site is not None and by_category is not None
    assert sum(by_site.values()) == pytest.approx(1.0)
    assert sum(by_category.values()) == pytest.approx(1.0)
    assert next(iter(by_site)) == trace.peak("mlp")[:2] == (1, 2)  # the likeliest first: the peak
    assert 0.5 < by_site[(1, 2)] < 1.0 and by_site.get((0, 2), 0.0) > 0.0  # the close second wins sometimes
    assert set(by_category) == {c.value for c in trace.categories}
    assert by_category["last_subject"] == pytest.approx(1.0)  # token 2 is the subject's last


def test_peak_probabilities_are_seeded() -> None:
    trace = peaked_trace()
    assert trace.peak_probability("mlp", n_boot=200, seed=3) == trace.peak_probability("mlp", n_boot=200, seed=3)


def test_bad_arguments_are_one_clear_line() -> None:
    trace = peaked_trace()
    with pytest.raises(ValueError, match="confidence level must be between 0 and 1.*got 95"):
        trace.te_interval(95)
    with pytest.raises(ValueError, match="choose 'site' or 'category'"):
        trace.peak_probability("mlp", by="token")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="'attn' was not traced"):
        trace.ie_se("attn")


def test_one_draw_gives_no_interval() -> None:
    trace = make_trace_with_draws([0.2], np.full((2, 5, 1), 0.4))
    assert trace.te_interval() is None and trace.ie_interval("mlp") is None and trace.ie_se("mlp") is None
    assert trace.peak_probability("mlp", n_boot=10) == {trace.peak("mlp")[:2]: 1.0}


# -- the JSON ------------------------------------------------------------------------------

def test_draws_round_trip_bit_for_bit_as_base64_float32() -> None:
    trace = peaked_trace()
    data = json.loads(trace.to_json())
    assert data["sample_effects"]["encoding"] == "base64 float32 little-endian"
    assert data["sample_effects"]["n"] == 8 and data["sample_effects"]["shape"] == [2, 5]
    again = Trace.from_json(trace.to_json())
    assert again == trace
    assert np.array_equal(again.ie_samples("mlp"), trace.ie_samples("mlp"))


def test_damaged_draws_are_refused_with_the_reason() -> None:
    data = json.loads(peaked_trace().to_json())
    data["sample_effects"]["n"] = 9
    with pytest.raises(ResultsError, match="9 samples need 36 bytes"):
        Trace.from_dict(data)


def test_a_trace_without_draws_still_loads_and_has_no_intervals() -> None:
    """Traces written before the draws were kept (cache entries, results files)."""
    data = json.loads(peaked_trace().to_json())
    del data["sample_effects"]
    old = Trace.from_dict(data)
    assert old.n_samples is None
    assert old.te_interval() is None and old.te_se() is None
    assert old.ie_se("mlp") is None and old.ie_interval("mlp") is None and old.peak_probability("mlp") is None
    assert "sample_effects" not in json.loads(old.to_json())  # and it is written back as it was


def test_an_old_results_file_loads_with_traces_without_intervals() -> None:
    results = RunResults.load(OLD_RESULTS)
    traces = [fact.trace for fs in results.factsets for fact in fs.facts if fact.trace is not None]
    assert traces
    for trace in traces:
        assert trace.n_samples is None and trace.te_interval() is None


# -- on a model ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_shrink_as_one_over_sqrt_samples(seed: int) -> None:
    """From 16 to 64 draws an interval narrows by sqrt(4) x t(15)/t(63) = 2.13; the sd
    estimated from 16 draws varies by about 20%, so each ratio must lie within [1.5, 2.8]."""
    loaded = tiny_loaded("gpt2", layers=4)
    tracer = Tracer(loaded, TraceSettings(samples=16, window=2, seed=seed))
    small = tracer.trace(SUBJECT_MIDDLE)
    large = tracer.extend(small, SUBJECT_MIDDLE, 64)
    small_te, large_te = small.te_interval(), large.te_interval()
    assert small_te is not None and large_te is not None
    assert 1.5 <= small_te.width / large_te.width <= 2.8
    for kind in large.kinds:
        small_se, large_se = np.array(small.ie_se(kind)), np.array(large.ie_se(kind))
        varied = large_se > 0  # sites before the subject have no noise and no spread
        assert varied.any()
        ratio = float(np.median(small_se[varied] / large_se[varied]) * t_quantile(0.975, 15) / t_quantile(0.975, 63))
        assert 1.5 <= ratio <= 2.8, f"{kind}: median width ratio {ratio:.2f}"
    assert small.te_interval().low <= large.te <= small.te_interval().high
