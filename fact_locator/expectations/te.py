"""`te`: a fact's total effect TE = P(o) - P*(o) satisfies a comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.expectations.decision import interval_verdict, point_rule, verdict_outcome, verdict_words
from fact_locator.expectations.guards import wrong_target
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import (
    ArgumentError,
    Threshold,
    arg_number,
    arg_threshold,
    arguments,
    checked_number,
)
from fact_locator.expectations.registry import register_kind
from fact_locator.tracing.trace import Trace

__all__ = ["TeThreshold", "te_at_least"]


@dataclass(frozen=True)
class TeThreshold(ExpectationBase):
    threshold: Threshold
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return "te"

    @property
    def description(self) -> str:
        return f"TE {self.threshold}"

    def check(self, target: Any) -> Outcome:
        if (bad := wrong_target(self.id, self.scope, target)) is not None:
            return bad
        trace: Trace = target
        te = trace.te
        passed = self.threshold.holds(te)
        message = (
            f"{self.id}: TE = {te:.3f} (P(o) {trace.p_clean:.3f} - P*(o) {trace.p_corrupt:.3f}, "
            f"o = {trace.target_token!r}); expected TE {self.threshold}: {'holds' if passed else 'does not hold'}"
        )
        return Outcome(passed, message, {"te": te, "p_clean": trace.p_clean, "p_corrupt": trace.p_corrupt,
                                         "op": self.threshold.op, "threshold": self.threshold.value})

    def decide(self, target: Any, level: float) -> Outcome:
        """Passes when TE's t-interval over the noise draws at `level` lies where the
        comparison holds, fails when it lies wholly outside, undecided when it straddles."""
        if (bad := wrong_target(self.id, self.scope, target)) is not None:
            return bad
        trace: Trace = target
        interval = trace.te_interval(level)
        if interval is None:
            return point_rule(self.check(trace))
        verdict = interval_verdict(self.threshold, interval.low, interval.high)
        message = (
            f"{self.id}: TE = {trace.te:.3f} (P(o) {trace.p_clean:.3f} - P*(o) {trace.p_corrupt:.3f}, "
            f"o = {trace.target_token!r}); expected TE {self.threshold}: "
            f"{verdict_words(verdict, level, f'{interval.n} samples')}: "
            f"TE {interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"
        )
        return verdict_outcome(verdict, message, {"te": interval.estimate, "low": interval.low, "high": interval.high,
                                                  "n_samples": interval.n, "p_clean": trace.p_clean,
                                                  "p_corrupt": trace.p_corrupt, "op": self.threshold.op,
                                                  "threshold": self.threshold.value})


def te_at_least(x: float, *, strict: bool = False) -> Expectation:
    """TE >= x (TE > x when `strict`)."""
    return TeThreshold(Threshold(">" if strict else ">=", checked_number("the TE threshold", x)))


def parse_te(value: Any) -> Expectation:
    """`te: ">= 0.3"` or `te: {min: 0.3}`."""
    if isinstance(value, dict):
        args = arguments(value, (), ("min",))
        if "min" not in args:
            raise ArgumentError("needs a threshold: te: \">= 0.3\" or te: {min: 0.3}")
        return TeThreshold(Threshold(">=", arg_number(args, "min")))
    return TeThreshold(arg_threshold(value))


register_kind("te", "fact", parse_te, TeThreshold)
