"""The Python API's `assert_expectation`: decided at a confidence level when the target kept
its noise draws (passed, or `ExpectationFailed`, or `ExpectationUndecided`), by the point rule
otherwise; the level is `level=`, else the pytest run's --fl-confidence, else 0.95."""

from __future__ import annotations

import numpy as np
import pytest

from fact_locator.errors import ExpectationFailed, ExpectationUndecided
from fact_locator.expectations import assert_expectation, te_at_least
from fact_locator.expectations.decision import pop_run_level, push_run_level, run_level
from tests.support.trace_factory import make_trace, make_trace_with_draws

# TE draws with mean 0.21 and a 95% interval of about [0.19, 0.23] (8 draws).
NEAR = [0.21 + d for d in (-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03)]


def te_trace(te_draws: list[float]):
    corrupt = [0.75 - te for te in te_draws]
    return make_trace_with_draws(corrupt, np.zeros((2, 5, len(te_draws))) + np.array(corrupt))


def test_a_straddling_interval_raises_undecided_an_expectation_failed_with_the_numbers() -> None:
    with pytest.raises(ExpectationUndecided) as info:
        assert_expectation(te_at_least(0.2), te_trace(NEAR))
    assert isinstance(info.value, ExpectationFailed)  # a caller that catches failures catches it too
    assert "undecided at 95% after 8 samples: TE 0.210 [0.19" in str(info.value)
    assert info.value.outcome.undecided  # type: ignore[attr-defined]


def test_a_decided_verdict_passes_or_raises_expectation_failed_not_undecided() -> None:
    assert_expectation(te_at_least(0.15), te_trace(NEAR))
    with pytest.raises(ExpectationFailed) as info:
        assert_expectation(te_at_least(0.3), te_trace(NEAR))
    assert not isinstance(info.value, ExpectationUndecided)
    assert "does not hold at 95% after 8 samples" in str(info.value)


def test_level_and_looks_choose_the_level() -> None:
    assert_expectation(te_at_least(0.2), te_trace(NEAR), level=0.5)  # a narrow interval: decided
    with pytest.raises(ExpectationUndecided, match="undecided at 95% after"):
        assert_expectation(te_at_least(0.2), te_trace(NEAR), level=0.5, looks=10)


def test_the_default_level_is_the_runs_then_95_percent() -> None:
    push_run_level(0.5)  # what the plugin does at configure with --fl-confidence 0.5
    try:
        assert run_level() == 0.5
        assert_expectation(te_at_least(0.2), te_trace(NEAR))
    finally:
        pop_run_level()
    push_run_level(None)  # a run without --fl-confidence
    try:
        with pytest.raises(ExpectationUndecided, match="at 95%"):
            assert_expectation(te_at_least(0.2), te_trace(NEAR))
    finally:
        pop_run_level()


def test_a_trace_without_draws_keeps_the_point_rule() -> None:
    trace = make_trace()  # TE 0.70, no per-sample values
    assert_expectation(te_at_least(0.7), trace)
    with pytest.raises(ExpectationFailed) as info:
        assert_expectation(te_at_least(0.71), trace)
    assert not isinstance(info.value, ExpectationUndecided)


def test_an_aggregate_with_draws_is_decided_at_the_level() -> None:
    from fact_locator.aggregate import aggregate
    from fact_locator.expectations import ate_at_least

    agg = aggregate([te_trace([te + 0.01 * i for te in NEAR]) for i in range(4)], intervals=True)
    with pytest.raises(ExpectationUndecided, match=r"undecided at 95% after 4 facts"):
        assert_expectation(ate_at_least(agg.ate), agg)
    assert_expectation(ate_at_least(agg.ate - 0.1), agg)
