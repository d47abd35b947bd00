"""Expectations: checks on one fact's trace or on a fact set's aggregate.

A check never raises: `check(expectation, target)` returns an `Outcome` whose message shows
what was observed (syrupy's habit); `assert_expectation` raises `ExpectationFailed` once.
The YAML expectation language (docs/factsets.md) is *parsed* here by `parse_expectation`,
never evaluated.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from fact_locator.aggregate import Aggregate
from fact_locator.errors import ExpectationFailed, FactSetError
from fact_locator.tracing.settings import KINDS
from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = [
    "AGGREGATE_EXPECTATIONS",
    "CATEGORIES",
    "FACT_EXPECTATIONS",
    "Expectation",
    "ExpectationSpec",
    "Outcome",
    "assert_expectation",
    "ate_at_least",
    "aie_at_least",
    "check",
    "grid_excerpt",
    "ie_at_least",
    "max_aie_greater",
    "parse_comparison",
    "parse_expectation",
    "peak_at",
    "peak_layer_between",
    "peak_layer_in_half",
    "stronger",
    "te_at_least",
    "with_id",
]

Scope = Literal["fact", "aggregate"]
CATEGORIES: tuple[str, ...] = tuple(c.value for c in TokenCategory)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------------
# Outcome and protocol
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a check saw. `message` is readable on its own; `observed` holds the numbers."""

    passed: bool
    message: str
    observed: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Expectation(Protocol):
    id: str
    description: str
    scope: Scope

    def check(self, target: Any) -> Outcome: ...


def check(expectation: Expectation, target: Any) -> Outcome:
    """Run one expectation; a bug inside a check becomes a failed outcome, not an exception."""
    try:
        return expectation.check(target)
    except Exception as exc:  # noqa: BLE001 - outcomes never raise (syrupy style)
        return Outcome(False, f"{expectation.id}: the check itself failed: {type(exc).__name__}: {exc}", {"error": repr(exc)})


def assert_expectation(expectation: Expectation, target: Any) -> None:
    """Raise `ExpectationFailed(outcome.message, outcome)` when the expectation does not hold."""
    outcome = check(expectation, target)
    if not outcome.passed:
        raise ExpectationFailed(outcome.message, outcome)


def with_id(expectation: Expectation, new_id: str) -> Expectation:
    """The same expectation under another id (the YAML `id:` key)."""
    return replace(expectation, id_override=new_id)  # type: ignore[type-var]


# ----------------------------------------------------------------------------------------
# Thresholds
# ----------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}
_COMPARISON = re.compile(
    r"^\s*(?P<op>>=|<=|>|<|≥|≤)\s*(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<pct>%?)\s*$"
)


@dataclass(frozen=True)
class Threshold:
    op: str
    value: float

    def holds(self, observed: float) -> bool:
        return not math.isnan(observed) and _OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        return f"{self.op} {_num(self.value)}"


def parse_comparison(text: Any) -> Threshold:
    """'>= 0.3', '> 0.3', '<= 0.3', '< 0.3', '>= 30%' or a bare number (meaning >=)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a comparison such as \">= 0.3\", got {text!r}")
    if isinstance(text, (int, float)):
        return Threshold(">=", float(text))
    if not isinstance(text, str):
        raise ValueError(f"expected a comparison such as \">= 0.3\", got {text!r}")
    match = _COMPARISON.match(text)
    if not match:
        raise ValueError(f"cannot read the comparison {text!r}: write it as \">= 0.3\" or \"> 0.3\"")
    op = {"≥": ">=", "≤": "<="}.get(match["op"], match["op"])
    value = float(match["num"])
    if match["pct"]:
        value /= 100.0
    return Threshold(op, value)


def _facts(n: int) -> str:
    return f"{n} fact" if n == 1 else f"{n} facts"


def _num(x: float) -> str:
    return f"{x:.3f}" if isinstance(x, float) and abs(x) < 1000 else str(x)


# ----------------------------------------------------------------------------------------
# Message helpers
# ----------------------------------------------------------------------------------------


def _token_label(trace: Trace, token: int) -> str:
    text = trace.tokens[token] if 0 <= token < len(trace.tokens) else "?"
    cats = [c.value for c in TokenCategory if token in trace.positions(c)]
    return f"token {token} {text!r} ({', '.join(cats) or 'no category'})"


def grid_excerpt(trace: Trace, kind: str, layer: int, token: int, rows: int = 2, cols: int = 2) -> str:
    """A few layers around `layer` and tokens around `token` of `kind`'s grid, 3 decimals;
    the cell at (layer, token) is marked with `*`."""
    grid = trace.grid(kind)
    n_layers, n_tokens = len(grid), len(grid[0]) if grid else 0
    lo_l, hi_l = max(0, layer - rows), min(n_layers, layer + rows + 1)
    lo_t, hi_t = max(0, token - cols), min(n_tokens, token + cols + 1)
    heads = [f"{t}:{_short(trace.tokens[t]) if t < len(trace.tokens) else '?'}" for t in range(lo_t, hi_t)]
    width = max([9, *(len(h) for h in heads)])
    lines = [f"    {kind + ' IE':<9} " + "".join(h.rjust(width) + " " for h in heads)]
    for l in range(lo_l, hi_l):
        cells = []
        for t in range(lo_t, hi_t):
            mark = "*" if (l, t) == (layer, token) else " "
            cells.append(f"{grid[l][t]:.3f}".rjust(width) + mark)
        lines.append(f"    layer {l:>3} " + "".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str, limit: int = 10) -> str:
    text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _missing_kind(trace_or_agg: Any, kind: str, ident: str) -> Outcome | None:
    kinds = trace_or_agg.kinds if isinstance(trace_or_agg, Trace) else tuple(trace_or_agg.aie)
    if kind in kinds:
        return None
    return Outcome(
        False,
        f"{ident}: kind {kind!r} was not traced (traced kinds: {', '.join(kinds) or 'none'}); "
        f"add it to the fact set's settings.kinds",
        {"kind": kind, "traced_kinds": list(kinds)},
    )


def _wrong_target(ident: str, scope: Scope, target: Any) -> Outcome | None:
    wanted = Trace if scope == "fact" else Aggregate
    if isinstance(target, wanted):
        return None
    return Outcome(False, f"{ident}: expected a {wanted.__name__} to check, got {type(target).__name__}", {})


def _max_at(trace: Trace, kind: str, category: str) -> tuple[int, int, float] | None:
    """(layer, token, IE) of the largest IE of `kind` at the category's positions."""
    best: tuple[int, int, float] | None = None
    grid = trace.grid(kind)
    for pos in trace.positions(category):
        for layer, row in enumerate(grid):
            if best is None or row[pos] > best[2]:
                best = (layer, pos, row[pos])
    return best


def _no_positions(ident: str, trace: Trace, category: str) -> Outcome:
    return Outcome(
        False,
        f"{ident}: the prompt has no {category} token (tokens: {list(trace.tokens)}, subject {trace.subject_range})",
        {"category": category},
    )


# ----------------------------------------------------------------------------------------
# Per-fact expectations
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    id_override: str | None = field(default=None, kw_only=True, compare=False)

    @property
    def id(self) -> str:
        return self.id_override or self.default_id

    @property
    def default_id(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class PeakAt(_Base):
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
        if (bad := _wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind, self.id)) is not None:
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
            f"IE {value:.3f} at layer {layer}, {_token_label(trace, token)}; "
            f"{self.category} positions: {wanted}\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return Outcome(passed, message, observed)


@dataclass(frozen=True)
class PeakLayer(_Base):
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
        if (bad := _wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        layer, token, value = trace.peak(self.kind)
        n_layers = len(trace.grid(self.kind))
        low, high = self.bounds(n_layers)
        passed = low <= layer <= high
        where = f"the {self.half} half (layers {low}-{high} of {n_layers})" if self.half else f"layers {low}-{high} (of {n_layers})"
        message = (
            f"{self.id}: the {self.kind} peak is at layer {layer}, which is {'' if passed else 'not '}in {where}: "
            f"IE {value:.3f} at {_token_label(trace, token)}\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        observed = {"kind": self.kind, "layer": layer, "token": token, "token_text": trace.tokens[token],
                    "ie": value, "low": low, "high": high, "n_layers": n_layers}
        return Outcome(passed, message, observed)


@dataclass(frozen=True)
class TeThreshold(_Base):
    threshold: Threshold
    scope: Scope = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return "te"

    @property
    def description(self) -> str:
        return f"TE {self.threshold}"

    def check(self, target: Any) -> Outcome:
        if (bad := _wrong_target(self.id, self.scope, target)) is not None:
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


@dataclass(frozen=True)
class IeAtLeast(_Base):
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
        if (bad := _wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind, self.id)) is not None:
            return bad
        trace: Trace = target
        best = _max_at(trace, self.kind, self.category)
        if best is None:
            return _no_positions(self.id, trace, self.category)
        layer, token, value = best
        passed = value >= self.minimum
        message = (
            f"{self.id}: max {self.kind} IE at {self.category} = {value:.3f} at layer {layer}, "
            f"{_token_label(trace, token)}; expected >= {_num(float(self.minimum))}"
            f"\n{grid_excerpt(trace, self.kind, layer, token)}"
        )
        return Outcome(passed, message, {"kind": self.kind, "category": self.category, "layer": layer,
                                         "token": token, "ie": value, "threshold": self.minimum})


@dataclass(frozen=True)
class Stronger(_Base):
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
        bad = (_wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind_a, self.id)
               or _missing_kind(target, self.kind_b, self.id))
        if bad is not None:
            return bad
        trace: Trace = target
        a = _max_at(trace, self.kind_a, self.category)
        b = _max_at(trace, self.kind_b, self.category)
        if a is None or b is None:
            return _no_positions(self.id, trace, self.category)
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


# ----------------------------------------------------------------------------------------
# Aggregate expectations
# ----------------------------------------------------------------------------------------


def _curve_excerpt(agg: Aggregate, kind: str, category: str, layer: int, rows: int = 2) -> str:
    curve = agg.curve(kind, category)
    lo, hi = max(0, layer - rows), min(len(curve), layer + rows + 1)
    cells = ", ".join(f"{l}: {curve[l]:.3f}{'*' if l == layer else ''}" for l in range(lo, hi))
    return f"    {kind} AIE at {category} by layer: {cells}"


def _missing_category(agg: Aggregate, category: str, ident: str) -> Outcome | None:
    for cats in agg.aie.values():
        if category in cats:
            return None
    return Outcome(False, f"{ident}: no fact of the set has a {category} token", {"category": category})


@dataclass(frozen=True)
class AteThreshold(_Base):
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
            return f"the {_bound_name(self.threshold)} bound of ATE's {self.level:.0%} interval {self.threshold}"
        return f"ATE {self.threshold}"

    def check(self, target: Any) -> Outcome:
        if (bad := _wrong_target(self.id, self.scope, target)) is not None:
            return bad
        agg: Aggregate = target
        if self.level is not None:
            return _interval_outcome(self.id, "ATE", agg, "ate", self.threshold, self.level, {})
        passed = self.threshold.holds(agg.ate)
        message = (
            f"{self.id}: ATE = {agg.ate:.3f} over {_facts(agg.n_facts)} (mean P(o) {agg.mean_p_clean:.3f}, "
            f"mean P*(o) {agg.mean_p_corrupt:.3f}); expected ATE {self.threshold}: {'holds' if passed else 'does not hold'}"
        )
        return Outcome(passed, message, {"ate": agg.ate, "n_facts": agg.n_facts, "op": self.threshold.op,
                                         "threshold": self.threshold.value})


def _bound_name(threshold: Threshold) -> str:
    return "lower" if threshold.op in (">=", ">") else "upper"


def _interval_outcome(ident: str, what: str, agg: Aggregate, key: str, threshold: Threshold, level: float,
                      observed: dict[str, Any]) -> Outcome:
    """Compare the bound of a bootstrap interval of the aggregate with `threshold`."""
    interval = agg.interval(key, level)
    if interval is None:
        return Outcome(False, f"{ident}: no per-fact values for a {level:.0%} interval of {what} "
                              "(the aggregate was built without intervals)", {"level": level, **observed})
    bound_name = _bound_name(threshold)
    bound = interval.low if bound_name == "lower" else interval.high
    passed = threshold.holds(bound)
    message = (
        f"{ident}: {what} = {interval.estimate:.3f}, {level:.0%} interval [{interval.low:.3f}, {interval.high:.3f}] "
        f"over {_facts(interval.n)} (bootstrap, {interval.resamples} resamples); expected the {bound_name} bound "
        f"{threshold}: {'holds' if passed else 'does not hold'}"
    )
    return Outcome(passed, message, {**observed, "estimate": interval.estimate, "low": interval.low, "high": interval.high,
                                     "level": level, "n_facts": interval.n, "op": threshold.op,
                                     "threshold": threshold.value})


@dataclass(frozen=True)
class AieAtLeast(_Base):
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
        bad = (_wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind, self.id)
               or _missing_category(target, self.category, self.id))
        if bad is not None:
            return bad
        agg: Aggregate = target
        layer, value = agg.max_aie(self.kind, self.category)
        if self.level is not None:
            key = Aggregate.interval_key(self.kind, self.category)
            what = f"max {self.kind} AIE at {self.category} (layer {agg.layers.get(key, layer)})"
            return _interval_outcome(self.id, what, agg, key, Threshold(">=", self.minimum), self.level,
                                     {"kind": self.kind, "category": self.category, "layer": agg.layers.get(key, layer)})
        passed = value >= self.minimum
        message = (
            f"{self.id}: max {self.kind} AIE at {self.category} = {value:.3f} at layer {layer} "
            f"over {_facts(agg.n_facts)}; expected >= {_num(float(self.minimum))}\n"
            f"{_curve_excerpt(agg, self.kind, self.category, layer)}"
        )
        return Outcome(passed, message, {"kind": self.kind, "category": self.category, "layer": layer,
                                         "aie": value, "threshold": self.minimum, "n_facts": agg.n_facts})


@dataclass(frozen=True)
class MaxAieGreater(_Base):
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

    def check(self, target: Any) -> Outcome:
        bad = (_wrong_target(self.id, self.scope, target) or _missing_kind(target, self.kind_a, self.id)
               or _missing_kind(target, self.kind_b, self.id) or _missing_category(target, self.category_a, self.id)
               or _missing_category(target, self.category_b, self.id))
        if bad is not None:
            return bad
        agg: Aggregate = target
        la, a = agg.max_aie(self.kind_a, self.category_a)
        lb, b = agg.max_aie(self.kind_b, self.category_b)
        passed = a > b
        message = (
            f"{self.id}: max {self.kind_a} AIE at {self.category_a} = {a:.3f} (layer {la}) "
            f"{'>' if passed else '<='} max {self.kind_b} AIE at {self.category_b} = {b:.3f} (layer {lb}) "
            f"over {_facts(agg.n_facts)}\n{_curve_excerpt(agg, self.kind_a, self.category_a, la)}\n"
            f"{_curve_excerpt(agg, self.kind_b, self.category_b, lb)}"
        )
        return Outcome(passed, message, {"a": {"kind": self.kind_a, "category": self.category_a, "layer": la, "aie": a},
                                         "b": {"kind": self.kind_b, "category": self.category_b, "layer": lb, "aie": b}})


# ----------------------------------------------------------------------------------------
# Constructors (the Python API audits use)
# ----------------------------------------------------------------------------------------


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    return kind


def _category(category: TokenCategory | str) -> str:
    try:
        return TokenCategory(category).value
    except ValueError:
        raise ValueError(f"unknown token category {category!r}: choose from {', '.join(CATEGORIES)}") from None


def _number(name: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        raise ValueError(f"{name} must be a number, got {x!r}")
    return float(x)


def _layer(name: str, x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"{name} must be an integer layer index, got {x!r}")
    return x


def peak_at(kind: str, category: TokenCategory | str) -> Expectation:
    """The peak of `kind`'s IE grid is at a position of `category` (id `<kind>-peak`)."""
    return PeakAt(_kind(kind), _category(category))


def peak_layer_between(kind: str, low: int, high: int) -> Expectation:
    """The peak of `kind`'s grid is in layers low..high inclusive; negative counts from the top."""
    low, high = _layer("low", low), _layer("high", high)
    if (low >= 0) == (high >= 0) and low > high:
        raise ValueError(f"the layer range [{low}, {high}] is empty: low must be <= high")
    return PeakLayer(_kind(kind), low=low, high=high)


def peak_layer_in_half(kind: str, half: str) -> Expectation:
    """The peak of `kind`'s grid is in the 'lower' (layer < L/2) or 'upper' half."""
    if half not in ("lower", "upper"):
        raise ValueError(f"half must be 'lower' or 'upper', got {half!r}")
    return PeakLayer(_kind(kind), half=half)


def te_at_least(x: float, *, strict: bool = False) -> Expectation:
    """TE >= x (TE > x when `strict`)."""
    return TeThreshold(Threshold(">" if strict else ">=", _number("the TE threshold", x)))


def ie_at_least(kind: str, category: TokenCategory | str, x: float) -> Expectation:
    """The max over layers (and the category's positions) of `kind`'s IE is >= x."""
    return IeAtLeast(_kind(kind), _category(category), _number("min", x))


def stronger(kind_a: str, kind_b: str, category: TokenCategory | str) -> Expectation:
    """At `category`, the max IE of `kind_a` is strictly larger than that of `kind_b`."""
    return Stronger(_kind(kind_a), _kind(kind_b), _category(category))


def ate_at_least(x: float, *, strict: bool = False, level: float | None = None) -> Expectation:
    """Aggregate: ATE >= x (ATE > x when `strict`); with `level`, the lower bound of the
    bootstrap interval at that level (needs an aggregate built with intervals)."""
    return AteThreshold(Threshold(">" if strict else ">=", _number("the ATE threshold", x)),
                        None if level is None else _checked_level(level))


def aie_at_least(kind: str, category: TokenCategory | str, x: float, *, level: float | None = None) -> Expectation:
    """Aggregate: the max over layers of `kind`'s AIE at `category` is >= x; with `level`,
    the lower bound of its bootstrap interval (categories last_subject and last)."""
    return AieAtLeast(_kind(kind), _category(category), _number("min", x),
                      None if level is None else _checked_level(level))


def _checked_level(level: float) -> float:
    try:
        return _level(level)
    except _ArgError as exc:
        raise ValueError(str(exc)) from None


def max_aie_greater(kind_a: str, category_a: TokenCategory | str, kind_b: str, category_b: TokenCategory | str) -> Expectation:
    """Aggregate: max AIE of (kind_a, category_a) > max AIE of (kind_b, category_b)."""
    return MaxAieGreater(_kind(kind_a), _category(category_a), _kind(kind_b), _category(category_b))


# ----------------------------------------------------------------------------------------
# The YAML expectation language
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationSpec:
    """An expectation as written in a fact-set file: where, what text, and an optional xfail reason."""

    expectation: Expectation
    line: int
    source: str
    xfail: str | None = None

    @property
    def id(self) -> str:
        return self.expectation.id

    @property
    def scope(self) -> str:
        return self.expectation.scope


class _ArgError(Exception):
    """Raised while reading one expectation's arguments; carries an optional sub-key for the line."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _args(name: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        keys = ", ".join(f"{k}: ..." for k in required)
        raise _ArgError(f"takes a mapping {{{keys}}}, got {_show(value)}")
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise _ArgError(_unknown(f"argument {key!r}", key, allowed), key)
    for key in required:
        if key not in value:
            raise _ArgError(f"needs {key!r} (it takes {', '.join(allowed)})")
    return value


def _unknown(what: str, key: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (allowed: {', '.join(allowed)})"


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _arg_kind(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str) or value not in KINDS:
        close = difflib.get_close_matches(str(value), KINDS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _ArgError(f"unknown kind {value!r} for {key!r}{hint} (kinds: {', '.join(KINDS)})", key)
    return value


def _arg_category(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str) or value not in CATEGORIES:
        close = difflib.get_close_matches(str(value), CATEGORIES, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _ArgError(f"unknown token category {value!r} for {key!r}{hint} (categories: {', '.join(CATEGORIES)})", key)
    return value


def _arg_number(args: dict[str, Any], key: str) -> float:
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _ArgError(f"{key!r} must be a number, got {_show(value)}", key)
    return float(value)


def _arg_threshold(name: str, value: Any) -> Threshold:
    try:
        return parse_comparison(value)
    except ValueError as exc:
        raise _ArgError(str(exc)) from None


def _parse_peak(kind: str) -> Callable[[Any], Expectation]:
    def parse(value: Any) -> Expectation:
        if isinstance(value, dict):
            args = _args(f"{kind}-peak", value, ("at",))
            return PeakAt(kind, _arg_category(args, "at"))
        return PeakAt(kind, _arg_category({"at": value}, "at"))

    return parse


def _parse_peak_layer(value: Any) -> Expectation:
    args = _args("peak-layer", value, ("kind",), ("between", "half"))
    kind = _arg_kind(args, "kind")
    if ("between" in args) == ("half" in args):
        raise _ArgError("needs exactly one of 'between: [low, high]' or 'half: lower|upper'")
    if "half" in args:
        if args["half"] not in ("lower", "upper"):
            raise _ArgError(f"'half' must be lower or upper, got {args['half']!r}", "half")
        return PeakLayer(kind, half=args["half"])
    between = args["between"]
    if (not isinstance(between, list) or len(between) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in between)):
        raise _ArgError(f"'between' must be two layer numbers [low, high], got {between!r}", "between")
    low, high = between
    if (low >= 0) == (high >= 0) and low > high:
        raise _ArgError(f"'between' range [{low}, {high}] is empty: low must be <= high", "between")
    return PeakLayer(kind, low=low, high=high)


def _parse_te(value: Any) -> Expectation:
    if isinstance(value, dict):
        args = _args("te", value, (), ("min",))
        if "min" not in args:
            raise _ArgError("needs a threshold: te: \">= 0.3\" or te: {min: 0.3}")
        return TeThreshold(Threshold(">=", _arg_number(args, "min")))
    return TeThreshold(_arg_threshold("te", value))


_AT_LEVEL = re.compile(r"^(?P<cmp>.*?)\s+at\s+(?P<num>\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def _level(value: Any, key: str | None = None) -> float:
    """A confidence level: 0.95, or 95 / '95%' as a percentage."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise _ArgError(f"cannot read the level {value!r}: write 0.95 or '95%'", key) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _ArgError(f"the level must be a number such as 0.95, got {_show(value)}", key)
    level = float(value)
    if level >= 1:
        level /= 100.0
    if not 0.5 <= level < 1:
        raise _ArgError(f"the level must be between 50% and 100% (such as 0.95), got {value!r}", key)
    return level


def _threshold_at_level(name: str, value: Any) -> tuple[Threshold, float | None]:
    """'>= 0.15' or '>= 0.15 at 95%' (the interval's bound at that level)."""
    if isinstance(value, str):
        match = _AT_LEVEL.match(value)
        if match:
            return _arg_threshold(name, match["cmp"]), _level(f"{match['num']}%")
    return _arg_threshold(name, value), None


def _parse_ate(value: Any) -> Expectation:
    if isinstance(value, dict):
        args = _args("ate", value, (), ("min", "level"))
        if "min" not in args:
            raise _ArgError("needs a threshold: ate: \">= 0.15\" or ate: {min: 0.15}")
        level = _level(args["level"], "level") if "level" in args else None
        return AteThreshold(Threshold(">=", _arg_number(args, "min")), level)
    threshold, level = _threshold_at_level("ate", value)
    return AteThreshold(threshold, level)


def _parse_ie(value: Any) -> Expectation:
    args = _args("ie", value, ("kind", "at", "min"))
    return IeAtLeast(_arg_kind(args, "kind"), _arg_category(args, "at"), _arg_number(args, "min"))


def _parse_aie(value: Any) -> Expectation:
    from fact_locator.aggregate import INTERVAL_CATEGORIES

    args = _args("aie", value, ("kind", "at", "min"), ("level",))
    category = _arg_category(args, "at")
    level = None
    if "level" in args:
        level = _level(args["level"], "level")
        if category not in INTERVAL_CATEGORIES:
            raise _ArgError(f"an interval ('level') is kept only at {' and '.join(INTERVAL_CATEGORIES)}, "
                            f"not at {category}", "at")
    return AieAtLeast(_arg_kind(args, "kind"), category, _arg_number(args, "min"), level)


def _parse_stronger(value: Any) -> Expectation:
    args = _args("stronger", value, ("kind", "than", "at"))
    a, b = _arg_kind(args, "kind"), _arg_kind(args, "than")
    if a == b:
        raise _ArgError(f"compares two different kinds, got {a!r} twice", "than")
    return Stronger(a, b, _arg_category(args, "at"))


def _parse_max_aie(value: Any) -> Expectation:
    args = _args("max-aie", value, ("kind", "at", "greater-than"))
    other = args["greater-than"]
    if not isinstance(other, dict):
        raise _ArgError(f"'greater-than' takes a mapping {{kind: ..., at: ...}}, got {_show(other)}", "greater-than")
    try:
        other_args = _args("greater-than", other, ("kind", "at"))
        kind_b, cat_b = _arg_kind(other_args, "kind"), _arg_category(other_args, "at")
    except _ArgError as exc:
        raise _ArgError(f"greater-than: {exc}", "greater-than") from None
    return MaxAieGreater(_arg_kind(args, "kind"), _arg_category(args, "at"), kind_b, cat_b)


_PARSERS: dict[str, tuple[Scope, Callable[[Any], Expectation]]] = {
    "hidden-peak": ("fact", _parse_peak("hidden")),
    "mlp-peak": ("fact", _parse_peak("mlp")),
    "attn-peak": ("fact", _parse_peak("attn")),
    "peak-layer": ("fact", _parse_peak_layer),
    "te": ("fact", _parse_te),
    "ie": ("fact", _parse_ie),
    "stronger": ("fact", _parse_stronger),
    "ate": ("aggregate", _parse_ate),
    "aie": ("aggregate", _parse_aie),
    "max-aie": ("aggregate", _parse_max_aie),
}
FACT_EXPECTATIONS: tuple[str, ...] = tuple(n for n, (s, _) in _PARSERS.items() if s == "fact")
AGGREGATE_EXPECTATIONS: tuple[str, ...] = tuple(n for n, (s, _) in _PARSERS.items() if s == "aggregate")
_META_KEYS = ("id", "xfail")


def _source(value: Any) -> str:
    """The expectation as YAML-ish flow text, for messages (`te: '>= 0.3'`)."""
    import yaml  # lazy: only fact-set parsing needs it

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text


def parse_expectation(node_value: Any, path: str | Path, line: int, scope: str, *, node: Any = None) -> ExpectationSpec:
    """One item of an `expect:` (scope 'fact') or `aggregate:` (scope 'aggregate') list.

    `node_value` is the item as `yaml.safe_load` gives it: a one-key mapping
    `{name: argument}`, with optional sibling keys `id:` and `xfail:` (which may also sit
    inside a mapping argument). `node`, when given, is the item's composed YAML node; it
    only sharpens line numbers of errors inside the item. Raises `FactSetError(msg, path, line)`.
    """
    if scope not in ("fact", "aggregate"):
        raise ValueError(f"scope must be 'fact' or 'aggregate', got {scope!r}")

    def fail(message: str, *keys: str) -> FactSetError:
        if len(keys) == 2 and keys[1] in _META_KEYS and _sub_line(node, keys[1:], 0):
            keys = keys[1:]  # `id:` / `xfail:` written beside the name, not inside its mapping
        return FactSetError(message, path, _sub_line(node, keys, line))

    allowed_names = FACT_EXPECTATIONS if scope == "fact" else AGGREGATE_EXPECTATIONS
    if isinstance(node_value, str):
        hint = f" (write '- {node_value}: ...')" if node_value in _PARSERS else ""
        raise fail(f"an expectation is a mapping such as '- te: \">= 0.3\"', got the string {node_value!r}{hint}")
    if not isinstance(node_value, dict):
        raise fail(f"an expectation is a mapping such as '- te: \">= 0.3\"', got {_show(node_value)}")
    for key in node_value:
        if not isinstance(key, str):
            raise fail(f"expectation names are strings, got {_show(key)}")
    names = [k for k in node_value if k not in _META_KEYS]
    if not names:
        raise fail(f"no expectation named in {node_value!r} (choose from {', '.join(allowed_names)})")
    if len(names) > 1:
        raise fail(f"one expectation per list item, got {', '.join(names)}; start each with '- '", names[1])
    name = names[0]
    if name not in _PARSERS:
        raise fail(_unknown(f"{'per-fact' if scope == 'fact' else 'aggregate'} expectation {name!r}", name, list(_PARSERS)), name)
    name_scope, parser = _PARSERS[name]
    if name_scope != scope:
        if scope == "aggregate":
            raise fail(f"{name!r} is a per-fact expectation; put it under 'expect:' (aggregate: takes {', '.join(allowed_names)})", name)
        raise fail(f"{name!r} is an aggregate expectation; put it under the set's 'aggregate:' (expect: takes {', '.join(allowed_names)})", name)

    argument = node_value[name]
    meta = {k: node_value[k] for k in _META_KEYS if k in node_value}
    if isinstance(argument, dict):
        argument = dict(argument)
        for key in _META_KEYS:
            if key in argument:
                if key in meta:
                    raise fail(f"{key!r} is given twice (beside and inside {name})", name, key)
                meta[key] = argument.pop(key)
    try:
        expectation = parser(argument)
    except _ArgError as exc:
        raise fail(f"{name}: {exc}", *((name, exc.key) if exc.key else (name,))) from None

    if "id" in meta:
        new_id = meta["id"]
        if not isinstance(new_id, str) or not ID_PATTERN.match(new_id):
            raise fail(f"'id' must match {ID_PATTERN.pattern} (it becomes part of a pytest node id), got {new_id!r}", name, "id")
        expectation = with_id(expectation, new_id)
    xfail = meta.get("xfail")
    if "xfail" in meta and (not isinstance(xfail, str) or not xfail.strip()):
        raise fail(f"'xfail' takes the reason as a string, got {_show(xfail)}", name, "xfail")
    return ExpectationSpec(expectation=expectation, line=line, source=_written(node) or _source(node_value), xfail=xfail)


def _written(node: Any) -> str | None:
    """The item's text exactly as written, when it sits on one line of the file."""
    start, end = getattr(node, "start_mark", None), getattr(node, "end_mark", None)
    buffer = getattr(start, "buffer", None)
    if start is None or end is None or not isinstance(buffer, str):
        return None
    text = buffer[start.index:end.index].strip()
    return text if text and "\n" not in text else None


def _sub_line(node: Any, keys: tuple[str, ...], default: int) -> int:
    """The 1-based line of the deepest of `keys` found below a composed mapping node
    (a key is looked up at each level, descending into mapping values)."""
    line = default
    current = node
    for key in keys:
        if current is None or not hasattr(current, "value") or not isinstance(current.value, list):
            break
        found = None
        for pair in current.value:
            if isinstance(pair, tuple) and getattr(pair[0], "value", None) == key:
                found = pair
                break
        if found is None:
            break
        line = found[0].start_mark.line + 1
        current = found[1]
    return line
