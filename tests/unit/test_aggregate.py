"""The aggregate's token categories, as ROME's averaging counts them (its notebook
average_causal_effects: a one-token subject is first and last subject token; the token after
a subject that ends right before the last token is first subsequent and last)."""

from __future__ import annotations

import pytest

from fact_locator.aggregate import aggregate
from tests.support.trace_factory import make_trace

# make_trace: 5 tokens, MLP grid (2 layers x 5 tokens):
#   layer 0: 0.1 0.2 0.35 0.0 0.01
#   layer 1: 0.0 0.1 0.2  0.05 0.3


def test_the_last_token_after_a_subject_that_ends_before_it_counts_as_first_subsequent() -> None:
    usual = make_trace(fact_id="usual")  # subject 0..2: first subsequent is token 3
    late = make_trace(fact_id="late", subject_range=(0, 4))  # subject 0..3: token 4 is the last and the next
    agg = aggregate([usual, late])
    # first subsequent: token 3 of `usual` and token 4 of `late`
    assert agg.aie["mlp"]["first_subsequent"] == pytest.approx(((0.0 + 0.01) / 2, (0.05 + 0.3) / 2))
    # last: token 4 of both
    assert agg.aie["mlp"]["last"] == pytest.approx((0.01, 0.3))


def test_a_subject_that_ends_the_prompt_has_no_first_subsequent_token() -> None:
    agg = aggregate([make_trace(subject_range=(2, 5))])
    assert "first_subsequent" not in agg.aie["mlp"]


def test_the_aggregate_keeps_the_peak_interval_that_covers_the_layer_choice() -> None:
    from fact_locator.aggregate import Aggregate
    from fact_locator.confidence import aie_interval, peak_aie_interval

    traces = [make_trace(fact_id=f"f{i}", p_clean=0.5 + i / 20,
                         ie={"mlp": ((0.0, 0.0, 0.3, 0.0, 0.1 * i), (0.0, 0.0, 0.6 * (i % 2), 0.0, 0.0))})
              for i in range(6)]
    agg = aggregate(traces, intervals=True)
    key = Aggregate.interval_key("mlp", "last_subject")
    assert agg.interval(key) == aie_interval(traces, "mlp", "last_subject")
    assert agg.peak_interval("mlp", "last_subject") == peak_aie_interval(traces, "mlp", "last_subject")
    assert agg.peak_interval("mlp", "last_subject").layer == agg.layers[key]
    again = Aggregate.from_dict(agg.to_dict())
    assert again == agg
    assert aggregate(traces[::-1], intervals=True).peak_intervals == agg.peak_intervals  # fact order does not matter
    assert aggregate(traces).peak_interval("mlp", "last_subject") is None
