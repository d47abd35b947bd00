"""`max-aie`: the largest AIE of one (kind, category) exceeds that of another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.expectations.decision import NO_DRAWS_NOTE, point_rule, probability_verdict, verdict_outcome, verdict_words
from fact_locator.expectations.excerpts import curve_excerpt, facts_count
from fact_locator.expectations.guards import missing_category, missing_kind, wrong_target
from fact_locator.expectations.intervals import TWO_LEVEL_MAX
from fact_locator.expectations.outcome import Expectation, ExpectationBase, Outcome, Scope
from fact_locator.expectations.parsing import (
    ArgumentError,
    arg_category,
    arg_kind,
    arguments,
    checked_category,
    checked_kind,
    show,
)
from fact_locator.expectations.registry import register_kind
from fact_locator.tracing.trace import TokenCategory

__all__ = ["MaxAieGreater", "max_aie_greater"]


@dataclass(frozen=True)
class MaxAieGreater(ExpectationBase):
    kind_a: str
    category_a: str
    kind_b: str
    category_b: str
    scope: Scope = field(default="aggregate", init=False)

    @property
    def default_id(self) -> str:
        return f"max-aie-{self.kind_a}-{self.category_a}-gt-{self.kind_b}-{self.category_b}"

    @property
    def description(self) -> str:
        return (f"the max {self.kind_a} AIE at {self.category_a} exceeds "
                f"the max {self.kind_b} AIE at {self.category_b}")

    def _unusable(self, target: Any) -> Outcome | None:
        """The failed outcome for a target that is not an aggregate or lacks a kind or category."""
        return (wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind_a, self.id)
                or missing_kind(target, self.kind_b, self.id) or missing_category(target, self.category_a, self.id)
                or missing_category(target, self.category_b, self.id))

    def check(self, target: Any) -> Outcome:
        if (bad := self._unusable(target)) is not None:
            return bad
        agg: Aggregate = target
        la, a = agg.max_aie(self.kind_a, self.category_a)
        lb, b = agg.max_aie(self.kind_b, self.category_b)
        passed = a > b
        message = (
            f"{self.id}: max {self.kind_a} AIE at {self.category_a} = {a:.3f} (layer {la}) "
            f"{'>' if passed else '<='} max {self.kind_b} AIE at {self.category_b} = {b:.3f} (layer {lb}) "
            f"over {facts_count(agg.n_facts)}\n{curve_excerpt(agg, self.kind_a, self.category_a, la)}\n"
            f"{curve_excerpt(agg, self.kind_b, self.category_b, lb)}"
        )
        return Outcome(passed, message, {"a": {"kind": self.kind_a, "category": self.category_a, "layer": la, "aie": a},
                                         "b": {"kind": self.kind_b, "category": self.category_b, "layer": lb, "aie": b}})

    def decide(self, target: Any, level: float) -> Outcome:
        """The probability, over the replicates of the two-level bootstrap (facts, then each
        fact's noise draws), that the first curve's max over layers exceeds the second's, both
        maxima taken inside each replicate (so the layers that peak may move between them):
        passed at >= `level`, failed at <= 1 - `level`, undecided between
        (`probability_verdict`). The two curves are resampled together, so the comparison is
        paired. Without per-draw data the point rule, and the message says so."""
        import numpy as np

        from fact_locator.confidence import percentile_ends

        if (bad := self._unusable(target)) is not None:
            return bad
        agg: Aggregate = target
        replicates = agg.curve_replicates([(self.kind_a, self.category_a), (self.kind_b, self.category_b)])
        if replicates is None:
            return point_rule(self.check(agg), NO_DRAWS_NOTE)
        maxima = replicates.max(axis=2)  # (resamples, 2)
        maxima = maxima[~np.isnan(maxima).any(axis=1)]  # a replicate with no fact in a category
        probability = float(np.mean(maxima[:, 0] > maxima[:, 1]))
        verdict = probability_verdict(probability, level)
        (la, a), (lb, b) = agg.max_aie(self.kind_a, self.category_a), agg.max_aie(self.kind_b, self.category_b)
        low_a, high_a = percentile_ends(maxima[:, 0], level)
        low_b, high_b = percentile_ends(maxima[:, 1], level)
        count = facts_count(agg.n_facts)
        message = (
            f"{self.id}: max {self.kind_a} AIE at {self.category_a} = {a:.3f} [{low_a:.3f}, {high_a:.3f}] (layer {la}) "
            f"> max {self.kind_b} AIE at {self.category_b} = {b:.3f} [{low_b:.3f}, {high_b:.3f}] (layer {lb}) "
            f"with probability {probability:.3f} over {len(maxima)} replicates: {verdict_words(verdict, level, count)} "
            f"({TWO_LEVEL_MAX})\n{curve_excerpt(agg, self.kind_a, self.category_a, la)}\n"
            f"{curve_excerpt(agg, self.kind_b, self.category_b, lb)}"
        )
        return verdict_outcome(verdict, message, {
            "a": {"kind": self.kind_a, "category": self.category_a, "layer": la, "aie": a, "low": low_a, "high": high_a},
            "b": {"kind": self.kind_b, "category": self.category_b, "layer": lb, "aie": b, "low": low_b, "high": high_b},
            "probability": probability, "n_facts": agg.n_facts, "two_level": True, "max_in_replicate": True})


def max_aie_greater(kind_a: str, category_a: TokenCategory | str, kind_b: str, category_b: TokenCategory | str) -> Expectation:
    """Aggregate: max AIE of (kind_a, category_a) > max AIE of (kind_b, category_b)."""
    return MaxAieGreater(checked_kind(kind_a), checked_category(category_a), checked_kind(kind_b), checked_category(category_b))


def parse_max_aie(value: Any) -> Expectation:
    """`max-aie: {kind: mlp, at: last_subject, greater-than: {kind: attn, at: last_subject}}`."""
    args = arguments(value, ("kind", "at", "greater-than"))
    other = args["greater-than"]
    if not isinstance(other, dict):
        raise ArgumentError(f"'greater-than' takes a mapping {{kind: ..., at: ...}}, got {show(other)}", "greater-than")
    try:
        other_args = arguments(other, ("kind", "at"))
        kind_b, cat_b = arg_kind(other_args, "kind"), arg_category(other_args, "at")
    except ArgumentError as exc:
        raise ArgumentError(f"greater-than: {exc}", "greater-than") from None
    return MaxAieGreater(arg_kind(args, "kind"), arg_category(args, "at"), kind_b, cat_b)


register_kind("max-aie", "aggregate", parse_max_aie, MaxAieGreater)
