"""Aggregate expectations decided at a level on the max over layers, taken inside each replicate
of the two-level bootstrap (facts, then each fact's noise draws): `max-aie` by the probability
that one curve's max exceeds the other's, `aie` by the interval of its max; and an `ate`/`aie`
written with its own level, decided at that level.

The traces are hand-built (`make_trace_with_draws`: 2 layers, 5 tokens; the last subject token
is token 2, the last token is token 4), so where each max lies is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from fact_locator.aggregate import Aggregate, aggregate
from fact_locator.expectations import (
    Verdict,
    aie_at_least,
    ate_at_least,
    check,
    decide,
    max_aie_greater,
    parse_expectation,
)
from tests.support.trace_factory import make_trace_with_draws

N_DRAWS = 8
SPREAD = np.array([-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03])


def fact(i: int, last_subject: tuple[float, float], last: tuple[float, float] = (0.0, 0.0), spread: float = 1.0):
    """A trace whose MLP IE at the last subject token is `last_subject` (layer 0, layer 1) and
    at the last token `last`, in every draw give or take `spread` x SPREAD; 0 elsewhere."""
    restored = np.full((2, 5, N_DRAWS), 0.05)
    for layer in (0, 1):
        restored[layer, 2] += last_subject[layer] + spread * SPREAD
        restored[layer, 4] += last[layer] + spread * SPREAD[::-1]
    return make_trace_with_draws([0.05] * N_DRAWS, restored, fact_id=f"f{i}")


def moving_peak(n: int, last: tuple[float, float] = (0.0, 0.0)) -> list:
    """n facts at the last subject token: half peak at layer 0 (0.6, 0.0), half at layer 1
    (0.0, 0.6). The mean curve is flat, 0.3 at both layers, but a bootstrap replicate draws
    more of one half than the other, so its curve's max lies above 0.3, at whichever layer won."""
    return [fact(i, (0.6, 0.0) if i % 2 else (0.0, 0.6), last) for i in range(n)]


# -- max-aie --------------------------------------------------------------------------------
def test_max_aie_passes_when_the_first_max_exceeds_the_second_in_nearly_every_replicate() -> None:
    agg = aggregate([fact(i, (0.1, 0.3 + 0.01 * i), (0.05, 0.1)) for i in range(6)], intervals=True)
    outcome = decide(max_aie_greater("mlp", "last_subject", "mlp", "last"), agg, level=0.95)
    assert outcome.verdict is Verdict.PASSED
    assert outcome.observed["probability"] == 1.0
    # Both maxima with their intervals, and the probability.
    assert "max mlp AIE at last_subject = 0.325 [0.3" in outcome.message
    assert "(layer 1) > max mlp AIE at last = 0.100 [0.0" in outcome.message
    assert "with probability 1.000 over 2000 replicates: holds at 95% after 6 facts" in outcome.message
    assert "the max over layers taken in each replicate" in outcome.message
    reverse = decide(max_aie_greater("mlp", "last", "mlp", "last_subject"), agg, level=0.95)
    assert reverse.verdict is Verdict.FAILED and "with probability 0.000" in reverse.message


def test_max_aie_is_undecided_when_the_maxima_are_too_close_for_the_facts_and_draws() -> None:
    # The last token's max is steady at 0.40; the last subject token's mean curve is flat at
    # 0.35, and its max in a replicate tops 0.40 only when the replicate draws 5 or 6 of the
    # 6 facts from one half.
    traces = [fact(i, pair, (0.40, 0.0)) for i, pair in enumerate([(0.2, 0.5), (0.5, 0.2)] * 3)]
    outcome = decide(max_aie_greater("mlp", "last_subject", "mlp", "last"), aggregate(traces, intervals=True), level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED and not outcome.passed
    assert "undecided at 95% after 6 facts" in outcome.message
    assert 0.05 < outcome.observed["probability"] < 0.95


def test_max_aie_takes_each_max_inside_the_replicate_not_at_the_mean_curves_peak_layer() -> None:
    """The last subject token's peak moves between layers 0 and 1 from replicate to replicate;
    its max in a replicate is above its value at the mean curve's peak layer (0), so a steady
    0.33 at the last token beats it less often than it beats layer 0 alone."""
    agg = aggregate(moving_peak(40, last=(0.33, 0.0)), intervals=True)
    outcome = decide(max_aie_greater("mlp", "last", "mlp", "last_subject"), agg, level=0.95)
    replicates = agg.curve_replicates([("mlp", "last"), ("mlp", "last_subject")])
    assert replicates is not None
    at_layer_0 = float(np.mean(replicates[:, 0, :].max(axis=1) > replicates[:, 1, 0]))
    assert at_layer_0 > 0.6
    assert outcome.observed["probability"] < at_layer_0 - 0.2
    assert outcome.verdict is Verdict.UNDECIDED


def test_max_aie_without_per_draw_data_keeps_the_point_rule_and_says_so() -> None:
    agg = aggregate([fact(i, (0.1, 0.3), (0.05, 0.1)) for i in range(3)], intervals=True)
    read_back = Aggregate.from_dict(agg.to_dict())  # a results file keeps no per-draw curves
    assert read_back.curve_draws == {}
    outcome = decide(max_aie_greater("mlp", "last_subject", "mlp", "last"), read_back, level=0.95)
    assert outcome.verdict is Verdict.PASSED
    assert "decided by the point value: the aggregate kept no per-draw data" in outcome.message


def test_the_replicates_do_not_depend_on_the_order_of_the_facts() -> None:
    traces = moving_peak(8)
    a = aggregate(traces, intervals=True).curve_replicates([("mlp", "last_subject")])
    b = aggregate(traces[::-1], intervals=True).curve_replicates([("mlp", "last_subject")])
    assert np.array_equal(a, b)


def test_a_categorys_replicate_curve_averages_positions_as_the_aggregate_does() -> None:
    """ROME's averaging counts each middle-subject position as a sample, and so does a
    replicate: a fact weighs its number of positions there. A replicate that draws each of the
    two facts once averages their 4 positions (0.225), not their two means (0.15)."""
    short = fact(0, (0.1, 0.2))
    long = make_trace_with_draws([0.05] * N_DRAWS, np.full((2, 7, N_DRAWS), 0.35), fact_id="long",
                                 tokens=("A", "B", "C", "D", "E", " is", " in"), token_ids=tuple(range(7)),
                                 subject_range=(0, 5))
    agg = aggregate([short, long], intervals=True)
    replicates = agg.curve_replicates([("mlp", "middle_subject")])
    assert replicates is not None
    curve = agg.curve("mlp", "middle_subject")  # 1 position of `short` (0.0) and 3 of `long` (0.3)
    assert curve == pytest.approx((0.225, 0.225))
    assert sorted(set(np.round(replicates[:, 0, 0], 6))) == [0.0, 0.225, 0.3]


# -- aie -------------------------------------------------------------------------------------
def test_aie_is_decided_on_the_max_inside_each_replicate_covering_which_layer_peaks() -> None:
    """The mean curve is flat at 0.3; every replicate's max is at least 0.3 (one half of the
    facts always wins), so `aie >= 0.29` holds, where the interval at the mean's peak layer
    alone (0.6 x the replicate's share of layer-0 facts) straddles 0.29."""
    agg = aggregate(moving_peak(40), intervals=True)
    outcome = decide(aie_at_least("mlp", "last_subject", 0.29), agg, level=0.95)
    assert outcome.verdict is Verdict.PASSED
    assert outcome.observed["low"] > 0.29
    assert "max mlp AIE at last_subject = 0.300 (layer 0, the peak in" in outcome.message
    assert "holds at 95% after 40 facts" in outcome.message
    at_mean_peak = agg.two_level_interval(Aggregate.interval_key("mlp", "last_subject"), 0.95)
    assert at_mean_peak is not None and at_mean_peak.low < 0.29 < at_mean_peak.high


def test_aie_fails_when_the_max_lies_below_in_every_replicate_and_stays_open_near_it() -> None:
    agg = aggregate([fact(i, (0.1, 0.2 + 0.02 * (i % 3))) for i in range(9)], intervals=True)
    assert decide(aie_at_least("mlp", "last_subject", 0.5), agg, level=0.95).verdict is Verdict.FAILED
    assert decide(aie_at_least("mlp", "last_subject", 0.05), agg, level=0.95).verdict is Verdict.PASSED
    assert decide(aie_at_least("mlp", "last_subject", 0.22), agg, level=0.95).verdict is Verdict.UNDECIDED


def test_aie_of_an_aggregate_without_per_draw_curves_uses_the_mean_peak_layer_and_says_so() -> None:
    read_back = Aggregate.from_dict(aggregate(moving_peak(40), intervals=True).to_dict())
    outcome = decide(aie_at_least("mlp", "last_subject", 0.29), read_back, level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "(at layer 0, the mean peak: the aggregate kept no per-draw curves)" in outcome.message


# -- an expectation's own level --------------------------------------------------------------
def spread_ate(n: int = 6):
    """Facts whose TEs spread (0.70 +- 0.05): an ATE of 0.70 with a visible interval."""
    return aggregate([make_trace_with_draws([0.05 + 0.02 * (i - n / 2)] * N_DRAWS, np.full((2, 5, N_DRAWS), 0.1),
                                            fact_id=f"f{i}") for i in range(n)], intervals=True)


def test_an_ate_written_at_its_own_level_is_decided_at_that_level_three_ways() -> None:
    agg = spread_ate()
    at_80 = agg.two_level_interval("ate", 0.8)
    assert at_80 is not None
    inside = (at_80.low + agg.ate) / 2  # inside the 80% interval, below the estimate
    own = parse_expectation({"ate": f">= {inside:.4f} at 80%"}, "s.yaml", 3, "aggregate").expectation
    outcome = decide(own, agg, level=0.95)  # the session's level does not apply
    assert outcome.verdict is Verdict.UNDECIDED
    assert "undecided at 80% after 6 facts" in outcome.message
    # `check` keeps the one-sided rule: the lower bound of the facts-only interval, pass or fail.
    assert not check(own, agg).passed and not check(own, agg).undecided
    below = parse_expectation({"ate": {"min": at_80.low - 0.05, "level": 0.8}}, "s.yaml", 3, "aggregate").expectation
    assert decide(below, agg, level=0.95).verdict is Verdict.PASSED


def test_an_aie_written_with_its_own_level_is_decided_at_that_level() -> None:
    agg = aggregate(moving_peak(40), intervals=True)
    own = parse_expectation({"aie": {"kind": "mlp", "at": "last_subject", "min": 0.29, "level": 0.8}}, "s.yaml", 3,
                            "aggregate").expectation
    outcome = decide(own, agg, level=0.95)
    assert outcome.verdict is Verdict.PASSED and "holds at 80% after 40 facts" in outcome.message


def test_the_looks_divide_an_expectations_own_level_too() -> None:
    own = ate_at_least(0.1, level=0.8)
    assert "at 95% after" in decide(own, spread_ate(), level=0.5, looks=4).message


@pytest.mark.parametrize("item", [
    {"ate": ">= 0.15 at 95%", "confidence": 0.9},
    {"ate": {"min": 0.15, "level": 0.95, "confidence": 0.9}},
    {"aie": {"kind": "mlp", "at": "last", "min": 0.1, "level": 0.9}, "confidence": 0.99},
])
def test_a_confidence_and_an_own_level_together_are_one_line_naming_the_file_and_line(item: dict) -> None:
    from fact_locator.errors import FactSetError

    with pytest.raises(FactSetError) as info:
        parse_expectation(item, "s.yaml", 3, "aggregate")
    message = str(info.value)
    assert message.startswith("s.yaml:3: ") and "\n" not in message
    assert "'confidence' and its own level ('level:' or 'at 95%') both set the level it is decided at" in message
