"""`ate`: a fact set's average total effect satisfies a comparison (optionally the bound of
its bootstrap interval at a level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.expectations.decision import NO_DRAWS_NOTE, point_rule
from fact_locator.expectations.excerpts import facts_count
from fact_locator.expectations.guards import wrong_target
from fact_locator.expectations.intervals import aggregate_decision, bound_name, interval_outcome
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import (
    ArgumentError,
    Threshold,
    arg_number,
    arguments,
    checked_level,
    checked_number,
    level,
    threshold_at_level,
)
from fact_locator.expectations.registry import register_kind

__all__ = ["AteThreshold", "ate_at_least"]


@dataclass(frozen=True)
class AteThreshold(ExpectationBase):
    threshold: Threshold
    # With a level, the bootstrap interval's bound is compared (the lower bound for >= / >,
    # the upper one for <= / <), not the point estimate.
    level: float | None = None
    scope: Scope = field(default="aggregate", init=False)

    @property
    def default_id(self) -> str:
        return "ate"

    @property
    def description(self) -> str:
        if self.level is not None:
            return f"the {bound_name(self.threshold)} bound of ATE's {self.level:.0%} interval {self.threshold}"
        return f"ATE {self.threshold}"

    def check(self, target: Any) -> Outcome:
        if (bad := wrong_target(self.id, self.scope, target)) is not None:
            return bad
        agg: Aggregate = target
        if self.level is not None:
            return interval_outcome(self.id, "ATE", agg, "ate", self.threshold, self.level, {})
        passed = self.threshold.holds(agg.ate)
        message = (
            f"{self.id}: ATE = {agg.ate:.3f} over {facts_count(agg.n_facts)} (mean P(o) {agg.mean_p_clean:.3f}, "
            f"mean P*(o) {agg.mean_p_corrupt:.3f}); expected ATE {self.threshold}: {'holds' if passed else 'does not hold'}"
        )
        return Outcome(passed, message, {"ate": agg.ate, "n_facts": agg.n_facts, "op": self.threshold.op,
                                         "threshold": self.threshold.value})

    @property
    def own_level(self) -> float | None:
        """The level this expectation is decided at under `decide`: its `confidence:`, else its `level:`."""
        return self.confidence if self.confidence is not None else self.level

    def decide(self, target: Any, level: float) -> Outcome:
        """ATE's two-level bootstrap interval at `level` against the threshold (passed, failed
        or undecided). An expectation's own `level:` (`">= 0.15 at 95%"`) is its confidence
        level here (`decide` applies it); `check` keeps its one-sided rule."""
        if (bad := wrong_target(self.id, self.scope, target)) is not None:
            return bad
        decided = aggregate_decision(self.id, "ATE", target, "ate", self.threshold, level, {"ate": target.ate})
        return decided if decided is not None else point_rule(self.check(target), NO_DRAWS_NOTE)


def ate_at_least(x: float, *, strict: bool = False, level: float | None = None) -> Expectation:
    """Aggregate: ATE >= x (ATE > x when `strict`); with `level`, the lower bound of the
    bootstrap interval at that level (needs an aggregate built with intervals)."""
    return AteThreshold(Threshold(">" if strict else ">=", checked_number("the ATE threshold", x)),
                        None if level is None else checked_level(level))


def parse_ate(value: Any) -> Expectation:
    """`ate: ">= 0.15"`, `ate: ">= 0.15 at 95%"` or `ate: {min: 0.15, level: 0.95}`."""
    if isinstance(value, dict):
        args = arguments(value, (), ("min", "level"))
        if "min" not in args:
            raise ArgumentError("needs a threshold: ate: \">= 0.15\" or ate: {min: 0.15}")
        at_level = level(args["level"], "level") if "level" in args else None
        return AteThreshold(Threshold(">=", arg_number(args, "min")), at_level)
    threshold, at_level = threshold_at_level(value)
    return AteThreshold(threshold, at_level)


register_kind("ate", "aggregate", parse_ate, AteThreshold)
