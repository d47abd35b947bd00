"""`stronger`: at a category's tokens, the largest IE of one kind exceeds that of another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.expectations.decision import interval_verdict, point_rule, verdict_outcome, verdict_words
from fact_locator.expectations.excerpts import grid_excerpt
from fact_locator.expectations.guards import missing_kind, no_positions, wrong_target
from fact_locator.expectations.ie import max_at
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import ArgumentError, Threshold, arg_category, arg_kind, arguments, checked_category, checked_kind
from fact_locator.expectations.registry import register_kind
from fact_locator.tracing.trace import TokenCategory, Trace
from fact_locator.tracing.uncertainty import mean_interval

__all__ = ["Stronger", "stronger"]


@dataclass(frozen=True)
class Stronger(ExpectationBase):
    kind_a: str
    kind_b: str
    category: str
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return f"stronger-{self.kind_a}-{self.kind_b}-{self.category}"

    @property
    def description(self) -> str:
        return f"at the {self.category} token, the max {self.kind_a} IE exceeds the max {self.kind_b} IE"

    def check(self, target: Any) -> Outcome:
        bad = (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind_a, self.id)
               or missing_kind(target, self.kind_b, self.id))
        if bad is not None:
            return bad
        trace: Trace = target
        a = max_at(trace, self.kind_a, self.category)
        b = max_at(trace, self.kind_b, self.category)
        if a is None or b is None:
            return no_positions(self.id, trace, self.category)
        passed = a[2] > b[2]
        message = (
            f"{self.id}: at {self.category}, max {self.kind_a} IE {a[2]:.3f} (layer {a[0]}, token {a[1]}) "
            f"{'>' if passed else '<='} max {self.kind_b} IE {b[2]:.3f} (layer {b[0]}, token {b[1]}); "
            f"expected {self.kind_a} to be stronger"
            f"\n{grid_excerpt(trace, self.kind_a, a[0], a[1])}\n{grid_excerpt(trace, self.kind_b, b[0], b[1])}"
        )
        return Outcome(passed, message, {"category": self.category,
                                         self.kind_a: {"layer": a[0], "token": a[1], "ie": a[2]},
                                         self.kind_b: {"layer": b[0], "token": b[1], "ie": b[2]}})

    def decide(self, target: Any, level: float) -> Outcome:
        """The difference of the two kinds' largest IEs (sites chosen on the mean grids),
        draw by draw: passes when its t-interval at `level` lies above 0, fails when it lies
        at or below 0, undecided when it straddles 0."""
        bad = (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind_a, self.id)
               or missing_kind(target, self.kind_b, self.id))
        if bad is not None:
            return bad
        trace: Trace = target
        draws_a, draws_b = trace.ie_samples(self.kind_a), trace.ie_samples(self.kind_b)
        if draws_a is None or draws_b is None or draws_a.shape[-1] < 2:
            return point_rule(self.check(trace))
        a = max_at(trace, self.kind_a, self.category)
        b = max_at(trace, self.kind_b, self.category)
        if a is None or b is None:
            return no_positions(self.id, trace, self.category)
        diff, low, high, _ = mean_interval(draws_a[a[0], a[1]] - draws_b[b[0], b[1]], level)
        verdict = interval_verdict(Threshold(">", 0.0), float(low), float(high))
        n = int(draws_a.shape[-1])
        message = (
            f"{self.id}: {verdict_words(verdict, level, f'{n} samples')}: at {self.category}, max {self.kind_a} IE "
            f"minus max {self.kind_b} IE {float(diff):.3f} [{float(low):.3f}, {float(high):.3f}] ({self.kind_a} layer "
            f"{a[0]}, token {a[1]}; {self.kind_b} layer {b[0]}, token {b[1]}); expected {self.kind_a} to be stronger"
        )
        return verdict_outcome(verdict, message, {"category": self.category, "difference": float(diff),
                                                  "low": float(low), "high": float(high), "n_samples": n,
                                                  self.kind_a: {"layer": a[0], "token": a[1], "ie": a[2]},
                                                  self.kind_b: {"layer": b[0], "token": b[1], "ie": b[2]}})


def stronger(kind_a: str, kind_b: str, category: TokenCategory | str) -> Expectation:
    """At `category`, the max IE of `kind_a` is strictly larger than that of `kind_b`."""
    return Stronger(checked_kind(kind_a), checked_kind(kind_b), checked_category(category))


def parse_stronger(value: Any) -> Expectation:
    """`stronger: {kind: mlp, than: attn, at: last_subject}`."""
    args = arguments(value, ("kind", "than", "at"))
    a, b = arg_kind(args, "kind"), arg_kind(args, "than")
    if a == b:
        raise ArgumentError(f"compares two different kinds, got {a!r} twice", "than")
    return Stronger(a, b, arg_category(args, "at"))


register_kind("stronger", "fact", parse_stronger, Stronger)
