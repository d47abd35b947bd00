"""The failed outcomes a check returns before it looks at any number: the target is not a
trace (or aggregate), the kind was not traced, the category has no token."""

from __future__ import annotations

from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.expectations.outcome import Outcome, Scope
from fact_locator.tracing.trace import Trace

__all__ = ["missing_category", "missing_kind", "no_positions", "wrong_target"]


def wrong_target(ident: str, scope: Scope, target: Any) -> Outcome | None:
    wanted = Trace if scope == "fact" else Aggregate
    if isinstance(target, wanted):
        return None
    return Outcome(False, f"{ident}: expected a {wanted.__name__} to check, got {type(target).__name__}", {})


def missing_kind(trace_or_agg: Any, kind: str, ident: str) -> Outcome | None:
    kinds = trace_or_agg.kinds if isinstance(trace_or_agg, Trace) else tuple(trace_or_agg.aie)
    if kind in kinds:
        return None
    return Outcome(
        False,
        f"{ident}: kind {kind!r} was not traced (traced kinds: {', '.join(kinds) or 'none'}); "
        f"add it to the fact set's settings.kinds",
        {"kind": kind, "traced_kinds": list(kinds)},
    )


def missing_category(agg: Aggregate, category: str, ident: str) -> Outcome | None:
    for cats in agg.aie.values():
        if category in cats:
            return None
    return Outcome(False, f"{ident}: no fact of the set has a {category} token", {"category": category})


def no_positions(ident: str, trace: Trace, category: str) -> Outcome:
    return Outcome(
        False,
        f"{ident}: the prompt has no {category} token (tokens: {list(trace.tokens)}, subject {trace.subject_range})",
        {"category": category},
    )
