"""Reading the values expectations take: comparisons, confidence levels, kinds, token
categories and numbers, from a YAML argument (raising `ArgumentError`) or from a Python
constructor's arguments (raising `ValueError`). Shared by every kind's module."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fact_locator.settings import KINDS
from fact_locator.tracing.trace import TokenCategory

__all__ = [
    "CATEGORIES",
    "ArgumentError",
    "Threshold",
    "arg_category",
    "arg_kind",
    "arg_number",
    "arg_threshold",
    "arguments",
    "checked_level",
    "level",
    "parse_comparison",
    "threshold_at_level",
    "unknown_message",
]

CATEGORIES: tuple[str, ...] = tuple(c.value for c in TokenCategory)

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
_AT_LEVEL = re.compile(r"^(?P<cmp>.*?)\s+at\s+(?P<num>\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def format_number(x: float) -> str:
    return f"{x:.3f}" if isinstance(x, float) and abs(x) < 1000 else str(x)


@dataclass(frozen=True)
class Threshold:
    op: str
    value: float

    def holds(self, observed: float) -> bool:
        return not math.isnan(observed) and _OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.value)}"


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


# ----------------------------------------------------------------------------------------
# A YAML argument
# ----------------------------------------------------------------------------------------


class ArgumentError(Exception):
    """Raised while reading one expectation's argument; `key` (optional) is the sub-key whose
    line the error points at. The reader prefixes the expectation's name and adds file:line."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def unknown_message(what: str, key: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (allowed: {', '.join(allowed)})"


def arguments(value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapping argument with exactly the `required` keys and some of the `optional` ones."""
    if not isinstance(value, dict):
        keys = ", ".join(f"{k}: ..." for k in required)
        raise ArgumentError(f"takes a mapping {{{keys}}}, got {show(value)}")
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise ArgumentError(unknown_message(f"argument {key!r}", key, allowed), key)
    for key in required:
        if key not in value:
            raise ArgumentError(f"needs {key!r} (it takes {', '.join(allowed)})")
    return value


def arg_kind(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str) or value not in KINDS:
        close = difflib.get_close_matches(str(value), KINDS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArgumentError(f"unknown kind {value!r} for {key!r}{hint} (kinds: {', '.join(KINDS)})", key)
    return value


def arg_category(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str) or value not in CATEGORIES:
        close = difflib.get_close_matches(str(value), CATEGORIES, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArgumentError(
            f"unknown token category {value!r} for {key!r}{hint} (categories: {', '.join(CATEGORIES)})", key)
    return value


def arg_number(args: dict[str, Any], key: str) -> float:
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ArgumentError(f"{key!r} must be a number, got {show(value)}", key)
    return float(value)


def arg_threshold(value: Any) -> Threshold:
    try:
        return parse_comparison(value)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None


def level(value: Any, key: str | None = None) -> float:
    """A confidence level: 0.95, or 95 / '95%' as a percentage."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ArgumentError(f"cannot read the level {value!r}: write 0.95 or '95%'", key) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ArgumentError(f"the level must be a number such as 0.95, got {show(value)}", key)
    result = float(value)
    if result >= 1:
        result /= 100.0
    if not 0.5 <= result < 1:
        raise ArgumentError(f"the level must be between 50% and 100% (such as 0.95), got {value!r}", key)
    return result


def threshold_at_level(value: Any) -> tuple[Threshold, float | None]:
    """'>= 0.15' or '>= 0.15 at 95%' (the interval's bound at that level)."""
    if isinstance(value, str):
        match = _AT_LEVEL.match(value)
        if match:
            return arg_threshold(match["cmp"]), level(f"{match['num']}%")
    return arg_threshold(value), None


# ----------------------------------------------------------------------------------------
# A Python constructor's arguments
# ----------------------------------------------------------------------------------------


def checked_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    return kind


def checked_category(category: TokenCategory | str) -> str:
    try:
        return TokenCategory(category).value
    except ValueError:
        raise ValueError(f"unknown token category {category!r}: choose from {', '.join(CATEGORIES)}") from None


def checked_number(name: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        raise ValueError(f"{name} must be a number, got {x!r}")
    return float(x)


def checked_layer(name: str, x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"{name} must be an integer layer index, got {x!r}")
    return x


def checked_level(value: float) -> float:
    try:
        return level(value)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None
