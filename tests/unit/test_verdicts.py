"""Expectations decided at a confidence level (`decide`): passed, failed or undecided.

The traces are hand-built with chosen per-sample values (`make_trace_with_draws`), so each
interval's position against the threshold is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from fact_locator.expectations import Verdict, check, decide, te_at_least, with_confidence
from tests.support.trace_factory import make_trace, make_trace_with_draws


def te_trace(te_draws: list[float]):
    """A trace whose TE in each noise draw is `te_draws` (clean value 0.75)."""
    corrupt = [0.75 - te for te in te_draws]
    restored = np.zeros((2, 5, len(te_draws))) + np.array(corrupt)
    return make_trace_with_draws(corrupt, restored)


# TE draws with mean 0.21 and standard error 0.01: the 95% interval is about [0.19, 0.23].
NEAR = [0.21 + d for d in (-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03)]


def test_te_interval_above_the_threshold_passes() -> None:
    outcome = decide(te_at_least(0.15), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.PASSED and outcome.passed
    assert "expected TE >= 0.150: holds at 95% after 8 samples: TE 0.210 [" in outcome.message


def test_te_interval_below_the_threshold_fails() -> None:
    outcome = decide(te_at_least(0.3), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.FAILED and not outcome.passed


def test_te_interval_straddling_the_threshold_is_undecided() -> None:
    outcome = decide(te_at_least(0.2), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert not outcome.passed  # a caller that knows only pass/fail never passes it
    assert "undecided at 95% after 8 samples: TE 0.210 [0.19" in outcome.message
    assert outcome.observed["verdict"] == "undecided"


def test_the_point_rule_decides_the_same_trace_either_way() -> None:
    """`check` keeps today's rule: the mean 0.21 >= 0.2 passes."""
    assert check(te_at_least(0.2), te_trace(NEAR)).passed


def test_a_lower_level_decides_what_a_higher_one_leaves_open() -> None:
    assert decide(te_at_least(0.2), te_trace(NEAR), level=0.5).verdict is Verdict.PASSED


def test_looks_widen_the_interval_bonferroni() -> None:
    """1 - (1 - 0.5) / 10 = 95%: ten looks at 50% decide like one look at 95%."""
    outcome = decide(te_at_least(0.2), te_trace(NEAR), level=0.5, looks=10)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "undecided at 95% after" in outcome.message


def test_the_expectations_own_confidence_wins_over_the_sessions() -> None:
    own = with_confidence(te_at_least(0.2), 0.5)
    assert decide(own, te_trace(NEAR), level=0.95).verdict is Verdict.PASSED


def test_a_trace_without_draws_keeps_the_point_rule_and_says_so() -> None:
    outcome = decide(te_at_least(0.2), make_trace(), level=0.95)
    assert outcome.verdict is Verdict.PASSED
    assert "decided by the point value: the trace kept no per-sample values" in outcome.message


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "high", True])
def test_a_bad_level_is_refused_with_the_value(level: object) -> None:
    with pytest.raises(ValueError, match="between 0 and 1") as info:
        decide(te_at_least(0.2), te_trace(NEAR), level=level)  # type: ignore[arg-type]
    assert repr(level) in str(info.value)
