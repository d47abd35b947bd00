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
