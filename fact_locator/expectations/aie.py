"""`aie`: the largest average indirect effect of a kind at a category, over layers, reaches
a minimum (optionally the lower bound of its bootstrap interval at a level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.aggregate import INTERVAL_CATEGORIES, Aggregate
from fact_locator.expectations.decision import point_rule
from fact_locator.expectations.excerpts import curve_excerpt, facts_count
from fact_locator.expectations.guards import missing_category, missing_kind, wrong_target
from fact_locator.expectations.intervals import aggregate_decision, interval_outcome
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

    def check(self, target: Any) -> Outcome:
        bad = (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)
               or missing_category(target, self.category, self.id))
        if bad is not None:
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

    def decide(self, target: Any, level: float) -> Outcome:
        """The AIE at the layer where the mean curve peaks, by its two-level bootstrap interval
        at `level` (kept at last_subject and last; elsewhere the point rule). An expectation
        written with its own `level:` keeps its one-sided rule."""
        bad = (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)
               or missing_category(target, self.category, self.id))
        if bad is not None:
            return bad
        if self.level is not None:
            return self.check(target)
        agg: Aggregate = target
        key = Aggregate.interval_key(self.kind, self.category)
        layer = agg.layers.get(key, agg.max_aie(self.kind, self.category)[0])
        decided = aggregate_decision(self.id, f"max {self.kind} AIE at {self.category} (layer {layer})", agg, key,
                                     Threshold(">=", self.minimum), level,
                                     {"kind": self.kind, "category": self.category, "layer": layer})
        return decided if decided is not None else point_rule(self.check(target))


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
