"""`ie`: the largest IE of a kind at a category's tokens, over all layers, reaches a minimum."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.expectations.decision import format_level, point_rule, verdict_outcome, verdict_words
from fact_locator.expectations.excerpts import grid_excerpt, token_label
from fact_locator.expectations.guards import missing_kind, no_positions, wrong_target
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import (
    arg_category,
    arg_kind,
    arg_number,
    arguments,
    checked_category,
    checked_kind,
    checked_number,
    format_number,
)
from fact_locator.expectations.registry import register_kind
from fact_locator.expectations.outcome import Verdict
from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["IeAtLeast", "ie_at_least", "max_at"]


def max_at(trace: Trace, kind: str, category: str) -> tuple[int, int, float] | None:
    """(layer, token, IE) of the largest IE of `kind` at the category's positions."""
    best: tuple[int, int, float] | None = None
    grid = trace.grid(kind)
    for pos in trace.positions(category):
        for layer, row in enumerate(grid):
            if best is None or row[pos] > best[2]:
                best = (layer, pos, row[pos])
    return best


@dataclass(frozen=True)
class IeAtLeast(ExpectationBase):
    kind: str
    category: str
    minimum: float
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return f"ie-{self.kind}-{self.category}"

    @property
    def description(self) -> str:
        return f"the max {self.kind} IE at the {self.category} token is >= {self.minimum}"

    def check(self, target: Any) -> Outcome:
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        best = max_at(trace, self.kind, self.category)
        if best is None:
            return no_positions(self.id, trace, self.category)
        layer, token, value = best
        passed = value >= self.minimum
        message = (
            f"{self.id}: max {self.kind} IE at {self.category} = {value:.3f} at layer {layer}, "
            f"{token_label(trace, token)}; expected >= {format_number(float(self.minimum))}"
            f"\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return Outcome(passed, message, {"kind": self.kind, "category": self.category, "layer": layer,
                                         "token": token, "ie": value, "threshold": self.minimum})

    def decide(self, target: Any, level: float) -> Outcome:
        """Passes when some site (layer, token of the category) has its IE interval at `level`
        wholly >= the minimum: the largest IE is at least that site's. Fails when every site's
        IE lies below the minimum at once: each of the m sites' intervals at 1 - (1 - level)/m
        (Bonferroni over the sites) lies wholly below it, so that the claim about all m sites
        together keeps `level`. Undecided otherwise.

        Bonferroni rather than the max over sites inside bootstrap replicates of the draws:
        it keeps the t-intervals of every other per-fact verdict, honestly wide at ROME's 10
        draws where a percentile bootstrap is too narrow, and holds however the sites' draws
        depend on each other (they share the noise); the bootstrap max of noisy means is
        biased upward and would need its own correction. Its price is width on the fail side
        only: with 30 sites the t-quantile at 9 degrees of freedom, 2.26 at 95%, becomes 4.42."""
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        intervals = trace.ie_interval(self.kind, level)
        if intervals is None:
            return point_rule(self.check(trace))
        sites = [(layer, pos, row[pos]) for pos in trace.positions(self.category) for layer, row in enumerate(intervals)]
        if not sites:
            return no_positions(self.id, trace, self.category)
        layer, token, best = max(sites, key=lambda site: site[2].estimate)
        simultaneous = 1 - (1 - level) / len(sites)
        together = trace.ie_interval(self.kind, simultaneous)
        assert together is not None
        highest = max(together[l][t].high for l, t, _ in sites)
        if any(s[2].low >= self.minimum for s in sites):
            verdict = Verdict.PASSED
        elif highest < self.minimum:
            verdict = Verdict.FAILED
        else:
            verdict = Verdict.UNDECIDED
        message = (
            f"{self.id}: {verdict_words(verdict, level, f'{best.n} samples')}: max {self.kind} IE at {self.category} "
            f"{best.estimate:.3f} [{best.low:.3f}, {best.high:.3f}] at layer {layer}, {token_label(trace, token)}; "
            f"expected >= {format_number(float(self.minimum))}; the highest upper bound over the {len(sites)} sites "
            f"at {format_level(simultaneous)} (Bonferroni) is {highest:.3f}"
            f"\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return verdict_outcome(verdict, message, {"kind": self.kind, "category": self.category, "layer": layer,
                                                  "token": token, "ie": best.estimate, "low": best.low,
                                                  "high": best.high, "n_samples": best.n, "threshold": self.minimum,
                                                  "sites": len(sites), "sites_level": simultaneous,
                                                  "sites_high": highest})


def ie_at_least(kind: str, category: TokenCategory | str, x: float) -> Expectation:
    """The max over layers (and the category's positions) of `kind`'s IE is >= x."""
    return IeAtLeast(checked_kind(kind), checked_category(category), checked_number("min", x))


def parse_ie(value: Any) -> Expectation:
    """`ie: {kind: mlp, at: last_subject, min: 0.1}`."""
    args = arguments(value, ("kind", "at", "min"))
    return IeAtLeast(arg_kind(args, "kind"), arg_category(args, "at"), arg_number(args, "min"))


register_kind("ie", "fact", parse_ie, IeAtLeast)
