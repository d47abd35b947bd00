"""`aie`: the largest average indirect effect of a kind at a category, over layers, reaches
a minimum (optionally the lower bound of its bootstrap interval at a level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.aggregate import INTERVAL_CATEGORIES, Aggregate
from fact_locator.expectations.decision import (
    NO_DRAWS_NOTE,
    interval_verdict,
    point_rule,
    verdict_outcome,
    verdict_words,
)
from fact_locator.expectations.excerpts import curve_excerpt, facts_count
from fact_locator.expectations.guards import missing_category, missing_kind, wrong_target
from fact_locator.expectations.intervals import TWO_LEVEL_MAX, aggregate_decision, curve_facts, interval_outcome
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import (
    ArgumentError,
    Threshold,
    arg_category,
    arg_kind,
    arg_number,
    arguments,
    checked_category,
    checked_kind,
    checked_level,
    checked_number,
    format_number,
    level,
)
from fact_locator.expectations.registry import register_kind
from fact_locator.tracing.trace import TokenCategory

__all__ = ["AieAtLeast", "aie_at_least"]


@dataclass(frozen=True)
class AieAtLeast(ExpectationBase):
    kind: str
    category: str
    minimum: float
    level: float | None = None  # compare the lower bound of the bootstrap interval at this level
    scope: Scope = field(default="aggregate", init=False)

    @property
    def default_id(self) -> str:
        return f"aie-{self.kind}-{self.category}"

    @property
    def description(self) -> str:
        return f"the max {self.kind} AIE at the {self.category} token is >= {self.minimum}"

    def _unusable(self, target: Any) -> Outcome | None:
        """The failed outcome for a target that is not an aggregate or lacks the kind or category."""
        return (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)
                or missing_category(target, self.category, self.id))

    def check(self, target: Any) -> Outcome:
        if (bad := self._unusable(target)) is not None:
            return bad
        agg: Aggregate = target
        layer, value = agg.max_aie(self.kind, self.category)
        if self.level is not None:
            key = Aggregate.interval_key(self.kind, self.category)
            what = f"max {self.kind} AIE at {self.category} (layer {agg.layers.get(key, layer)})"
            return interval_outcome(self.id, what, agg, key, Threshold(">=", self.minimum), self.level,
                                    {"kind": self.kind, "category": self.category, "layer": agg.layers.get(key, layer)})
        passed = value >= self.minimum
        message = (
            f"{self.id}: max {self.kind} AIE at {self.category} = {value:.3f} at layer {layer} "
            f"over {facts_count(agg.n_facts)}; expected >= {format_number(float(self.minimum))}\n"
            f"{curve_excerpt(agg, self.kind, self.category, layer)}"
        )
        return Outcome(passed, message, {"kind": self.kind, "category": self.category, "layer": layer,
                                         "aie": value, "threshold": self.minimum, "n_facts": agg.n_facts})

    @property
    def own_level(self) -> float | None:
        """The level this expectation is decided at under `decide`: its `confidence:`, else its `level:`."""
        return self.confidence if self.confidence is not None else self.level

    def decide(self, target: Any, level: float) -> Outcome:
        """The max over layers of the AIE curve, taken inside each replicate of the two-level
        bootstrap (facts, then each fact's noise draws), so that the interval covers which
        layer peaks as well as the value there; its interval at `level` against the minimum.
        An aggregate without per-draw curves falls back to the interval at the layer where the
        mean curve peaks (at last_subject and last; the message says so), else the point rule.
        An expectation's own `level:` is its confidence level here (`decide` applies it)."""
        import numpy as np

        from fact_locator.confidence import percentile_ends

        if (bad := self._unusable(target)) is not None:
            return bad
        agg: Aggregate = target
        layer, value = agg.max_aie(self.kind, self.category)
        threshold = Threshold(">=", self.minimum)
        observed = {"kind": self.kind, "category": self.category, "layer": layer, "aie": value}
        replicates = agg.curve_replicates([(self.kind, self.category)])
        if replicates is None:
            return self._decide_at_the_mean_peak(agg, threshold, level)
        curves = replicates[:, 0, :]
        low, high = percentile_ends(curves.max(axis=1), level)
        verdict = interval_verdict(threshold, low, high)
        n = curve_facts(agg, self.kind, self.category)
        share = float(np.mean(np.argmax(curves, axis=1) == layer))
        message = (
            f"{self.id}: max {self.kind} AIE at {self.category} = {value:.3f} (layer {layer}, the peak in "
            f"{share:.0%} of replicates) over {facts_count(n)}; expected {threshold}: "
            f"{verdict_words(verdict, level, facts_count(n))}: [{low:.3f}, {high:.3f}] ({TWO_LEVEL_MAX})\n"
            f"{curve_excerpt(agg, self.kind, self.category, layer)}"
        )
        return verdict_outcome(verdict, message, {**observed, "estimate": value, "low": low, "high": high,
                                                  "n_facts": n, "op": ">=", "threshold": self.minimum,
                                                  "two_level": True, "max_in_replicate": True, "layer_share": share})

    def _decide_at_the_mean_peak(self, agg: Aggregate, threshold: Threshold, level: float) -> Outcome:
        key = Aggregate.interval_key(self.kind, self.category)
        layer = agg.layers.get(key, agg.max_aie(self.kind, self.category)[0])
        what = (f"max {self.kind} AIE at {self.category} (at layer {layer}, the mean peak: the aggregate kept "
                "no per-draw curves)")
        decided = aggregate_decision(self.id, what, agg, key, threshold, level,
                                     {"kind": self.kind, "category": self.category, "layer": layer})
        return decided if decided is not None else point_rule(self.check(agg), NO_DRAWS_NOTE)


def aie_at_least(kind: str, category: TokenCategory | str, x: float, *, level: float | None = None) -> Expectation:
    """Aggregate: the max over layers of `kind`'s AIE at `category` is >= x; with `level`,
    the lower bound of its bootstrap interval (categories last_subject and last)."""
    return AieAtLeast(checked_kind(kind), checked_category(category), checked_number("min", x),
                      None if level is None else checked_level(level))


def parse_aie(value: Any) -> Expectation:
    """`aie: {kind: mlp, at: last_subject, min: 0.05}`, with an optional `level: 0.95`."""
    args = arguments(value, ("kind", "at", "min"), ("level",))
    category = arg_category(args, "at")
    at_level = None
    if "level" in args:
        at_level = level(args["level"], "level")
        if category not in INTERVAL_CATEGORIES:
            raise ArgumentError(f"an interval ('level') is kept only at {' and '.join(INTERVAL_CATEGORIES)}, "
                                f"not at {category}", "at")
    return AieAtLeast(arg_kind(args, "kind"), category, arg_number(args, "min"), at_level)


register_kind("aie", "aggregate", parse_aie, AieAtLeast)
