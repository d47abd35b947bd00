"""`peak-layer`: the layer of a kind's IE peak lies in a range or in one half of the model."""

from __future__ import annotations

import math
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
from fact_locator.expectations.parsing import ArgumentError, arg_kind, arguments, checked_kind, checked_layer
from fact_locator.expectations.registry import register_kind
from fact_locator.tracing.trace import Trace

__all__ = ["PeakLayer", "peak_layer_between", "peak_layer_in_half"]


@dataclass(frozen=True)
class PeakLayer(ExpectationBase):
    """The peak layer of `kind` lies in [low, high] (inclusive; negative counts from the top)
    or in the lower / upper half of the model (`half`; lower = layer < n_layers / 2)."""

    kind: str
    low: int | None = None
    high: int | None = None
    half: str | None = None
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return f"peak-layer-{self.kind}"

    @property
    def description(self) -> str:
        if self.half:
            return f"the {self.kind} IE peaks in the {self.half} half of the layers"
        return f"the {self.kind} IE peaks between layers {self.low} and {self.high}"

    def bounds(self, n_layers: int) -> tuple[int, int]:
        if self.half == "lower":
            return 0, math.ceil(n_layers / 2) - 1
        if self.half == "upper":
            return math.ceil(n_layers / 2), n_layers - 1
        low, high = int(self.low or 0), int(self.high if self.high is not None else n_layers - 1)
        return (low + n_layers if low < 0 else low), (high + n_layers if high < 0 else high)

    def check(self, target: Any) -> Outcome:
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        layer, token, value = trace.peak(self.kind)
        n_layers = len(trace.grid(self.kind))
        low, high = self.bounds(n_layers)
        passed = low <= layer <= high
        where = f"the {self.half} half (layers {low}-{high} of {n_layers})" if self.half else f"layers {low}-{high} (of {n_layers})"
        message = (
            f"{self.id}: the {self.kind} peak is at layer {layer}, which is {'' if passed else 'not '}in {where}: "
            f"IE {value:.3f} at {token_label(trace, token)}\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        observed = {"kind": self.kind, "layer": layer, "token": token, "token_text": trace.tokens[token],
                    "ie": value, "low": low, "high": high, "n_layers": n_layers}
        return Outcome(passed, message, observed)

    def decide(self, target: Any, level: float) -> Outcome:
        """Passes when the peak's layer lies in the range with probability >= `level`
        (bootstrap over the noise draws), fails when <= 1 - level, undecided between."""
        if (bad := wrong_target(self.id, self.scope, target) or missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        n_layers = len(trace.grid(self.kind))
        low, high = self.bounds(n_layers)
        probability = peak_region_probability(trace, self.kind, lambda layer, _token: low <= layer <= high)
        if probability is None:
            return point_rule(self.check(trace))
        verdict = probability_verdict(probability, level)
        layer, token, value = trace.peak(self.kind)
        where = f"the {self.half} half (layers {low}-{high} of {n_layers})" if self.half else f"layers {low}-{high} (of {n_layers})"
        message = (
            f"{self.id}: {verdict_words(verdict, level, f'{trace.n_samples} samples')}: the {self.kind} peak is in "
            f"{where} with probability {probability:.3f}; the mean grid peaks at layer {layer}, "
            f"{token_label(trace, token)} (IE {value:.3f})\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return verdict_outcome(verdict, message, {"kind": self.kind, "layer": layer, "token": token, "ie": value,
                                                  "probability": probability, "low": low, "high": high,
                                                  "n_layers": n_layers, "n_samples": trace.n_samples})


def peak_layer_between(kind: str, low: int, high: int) -> Expectation:
    """The peak of `kind`'s grid is in layers low..high inclusive; negative counts from the top."""
    low, high = checked_layer("low", low), checked_layer("high", high)
    if (low >= 0) == (high >= 0) and low > high:
        raise ValueError(f"the layer range [{low}, {high}] is empty: low must be <= high")
    return PeakLayer(checked_kind(kind), low=low, high=high)


def peak_layer_in_half(kind: str, half: str) -> Expectation:
    """The peak of `kind`'s grid is in the 'lower' (layer < L/2) or 'upper' half."""
    if half not in ("lower", "upper"):
        raise ValueError(f"half must be 'lower' or 'upper', got {half!r}")
    return PeakLayer(checked_kind(kind), half=half)


def parse_peak_layer(value: Any) -> Expectation:
    """`peak-layer: {kind: mlp, between: [0, 14]}` or `{kind: attn, half: upper}`."""
    args = arguments(value, ("kind",), ("between", "half"))
    kind = arg_kind(args, "kind")
    if ("between" in args) == ("half" in args):
        raise ArgumentError("needs exactly one of 'between: [low, high]' or 'half: lower|upper'")
    if "half" in args:
        if args["half"] not in ("lower", "upper"):
            raise ArgumentError(f"'half' must be lower or upper, got {args['half']!r}", "half")
        return PeakLayer(kind, half=args["half"])
    between = args["between"]
    if (not isinstance(between, list) or len(between) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in between)):
        raise ArgumentError(f"'between' must be two layer numbers [low, high], got {between!r}", "between")
    low, high = between
    if (low >= 0) == (high >= 0) and low > high:
        raise ArgumentError(f"'between' range [{low}, {high}] is empty: low must be <= high", "between")
    return PeakLayer(kind, low=low, high=high)


register_kind("peak-layer", "fact", parse_peak_layer, PeakLayer)
