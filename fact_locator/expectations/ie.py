"""`ie`: the largest IE of a kind at a category's tokens, over all layers, reaches a minimum."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def ie_at_least(kind: str, category: TokenCategory | str, x: float) -> Expectation:
    """The max over layers (and the category's positions) of `kind`'s IE is >= x."""
    return IeAtLeast(checked_kind(kind), checked_category(category), checked_number("min", x))


def parse_ie(value: Any) -> Expectation:
    """`ie: {kind: mlp, at: last_subject, min: 0.1}`."""
    args = arguments(value, ("kind", "at", "min"))
    return IeAtLeast(arg_kind(args, "kind"), arg_category(args, "at"), arg_number(args, "min"))


register_kind("ie", "fact", parse_ie, IeAtLeast)
