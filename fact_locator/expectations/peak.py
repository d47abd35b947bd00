"""`<kind>-peak`: the largest IE of a kind's grid is at a token of a category."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fact_locator.expectations.decision import (
    peak_region_probability,
    point_rule,
    probability_verdict,
    verdict_outcome,
    verdict_words,
)
from fact_locator.expectations.excerpts import grid_excerpt, token_label
from fact_locator.expectations.guards import missing_kind, wrong_target
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import arg_category, arguments, checked_category, checked_kind
from fact_locator.expectations.registry import register_kind
from fact_locator.settings import KINDS
from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["PeakAt", "peak_at"]


@dataclass(frozen=True)
class PeakAt(ExpectationBase):
    kind: str
    category: str
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return f"{self.kind}-peak"

    @property
    def description(self) -> str:
        return f"the {self.kind} IE peaks at the {self.category} token"

    def check(self, target: Any) -> Outcome:
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        layer, token, value = trace.peak(self.kind)
        wanted = trace.positions(self.category)
        passed = token in wanted
        observed = {"kind": self.kind, "layer": layer, "token": token, "token_text": trace.tokens[token],
                    "categories": [c.value for c in TokenCategory if token in trace.positions(c)],
                    "ie": value, "expected_category": self.category, "expected_positions": wanted}
        verb = "is" if passed else "is not"
        message = (
            f"{self.id}: the {self.kind} peak {verb} at a {self.category} token: "
            f"IE {value:.3f} at layer {layer}, {token_label(trace, token)}; "
            f"{self.category} positions: {wanted}\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return Outcome(passed, message, observed)

    def decide(self, target: Any, level: float) -> Outcome:
        """Passes when the peak sits at a token of the category with probability >= `level`
        (bootstrap over the noise draws), fails when <= 1 - level, undecided between."""
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        wanted = trace.positions(self.category)
        probability = peak_region_probability(trace, self.kind, lambda _layer, token: token in wanted)
        if probability is None:
            return point_rule(self.check(trace))
        verdict = probability_verdict(probability, level)
        layer, token, value = trace.peak(self.kind)
        message = (
            f"{self.id}: {verdict_words(verdict, level, f'{trace.n_samples} samples')}: the {self.kind} peak is at a "
            f"{self.category} token with probability {probability:.3f}; the mean grid peaks at layer {layer}, "
            f"{token_label(trace, token)} (IE {value:.3f})\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return verdict_outcome(verdict, message, {"kind": self.kind, "layer": layer, "token": token, "ie": value,
                                                  "probability": probability, "expected_category": self.category,
                                                  "expected_positions": wanted, "n_samples": trace.n_samples})


def peak_at(kind: str, category: TokenCategory | str) -> Expectation:
    """The peak of `kind`'s IE grid is at a position of `category` (id `<kind>-peak`)."""
    return PeakAt(checked_kind(kind), checked_category(category))


def _parser(kind: str) -> Callable[[Any], Expectation]:
    """`mlp-peak: last_subject` or `mlp-peak: {at: last_subject}`."""

    def parse(value: Any) -> Expectation:
        if isinstance(value, dict):
            return PeakAt(kind, arg_category(arguments(value, ("at",)), "at"))
        return PeakAt(kind, arg_category({"at": value}, "at"))

    return parse


for _kind in KINDS:
    register_kind(f"{_kind}-peak", "fact", _parser(_kind), PeakAt)
