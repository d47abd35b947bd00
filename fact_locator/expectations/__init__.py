"""Expectations: checks on one fact's trace or on a fact set's aggregate.

A check never raises: `check(expectation, target)` returns an `Outcome` whose message shows
what was observed (syrupy's habit); `assert_expectation` raises `ExpectationFailed` once.
The YAML expectation language (docs/factsets.md) is *parsed* by `parse_expectation`, never
evaluated.

Layout: `outcome` (Outcome, the protocol, check), `decision` (decide at a confidence level), `registry` (YAML name -> scope, parser,
class), `parsing` (comparisons, levels, kinds, categories), `reading` (YAML items ->
`ExpectationSpec`), and one module per kind, each registering itself. The kind modules are
imported below in the order their names are listed in messages.
"""

from __future__ import annotations

# Also importable from here, as before the split, though not in __all__: ID_PATTERN, Scope,
# Threshold and the kinds' classes.
from fact_locator.expectations.excerpts import grid_excerpt
from fact_locator.expectations.outcome import (
    Expectation,
    ExpectationBase,
    Outcome,
    Scope,
    Verdict,
    assert_expectation,
    check,
    with_confidence,
    with_id,
)
from fact_locator.expectations.decision import DEFAULT_LEVEL, decide
from fact_locator.expectations.parsing import CATEGORIES, ArgumentError, Threshold, parse_comparison
from fact_locator.expectations.reading import ID_PATTERN, ExpectationSpec, parse_expectation
from fact_locator.expectations.registry import KindEntry, register_kind, registered_kinds, unregister_kind

# The built-in kinds; importing a module registers its kinds (this order is the messages' order).
from fact_locator.expectations.peak import PeakAt, peak_at  # noqa: I001 - registration order
from fact_locator.expectations.peak_layer import PeakLayer, peak_layer_between, peak_layer_in_half
from fact_locator.expectations.te import TeThreshold, te_at_least
from fact_locator.expectations.ie import IeAtLeast, ie_at_least
from fact_locator.expectations.stronger import Stronger, stronger
from fact_locator.expectations.ate import AteThreshold, ate_at_least
from fact_locator.expectations.aie import AieAtLeast, aie_at_least
from fact_locator.expectations.max_aie import MaxAieGreater, max_aie_greater

__all__ = [
    "AGGREGATE_EXPECTATIONS",
    "CATEGORIES",
    "DEFAULT_LEVEL",
    "FACT_EXPECTATIONS",
    "ArgumentError",
    "Expectation",
    "ExpectationBase",
    "ExpectationSpec",
    "KindEntry",
    "Outcome",
    "Verdict",
    "assert_expectation",
    "ate_at_least",
    "aie_at_least",
    "check",
    "decide",
    "grid_excerpt",
    "ie_at_least",
    "max_aie_greater",
    "parse_comparison",
    "parse_expectation",
    "peak_at",
    "peak_layer_between",
    "peak_layer_in_half",
    "register_kind",
    "registered_kinds",
    "stronger",
    "te_at_least",
    "unregister_kind",
    "with_confidence",
    "with_id",
]

# The built-in kinds' names by scope (kinds registered later are in `registered_kinds()`).
FACT_EXPECTATIONS: tuple[str, ...] = tuple(e.name for e in registered_kinds("fact"))
AGGREGATE_EXPECTATIONS: tuple[str, ...] = tuple(e.name for e in registered_kinds("aggregate"))
