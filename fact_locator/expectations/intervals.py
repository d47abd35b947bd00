"""Comparing a bootstrap interval's bound, rather than the point estimate, with a threshold:
the lower bound for >= / >, the upper one for <= / <; and deciding an aggregate at a
confidence level: passed, failed or undecided (`aggregate_decision` for a value per fact,
`Aggregate.curve_replicates` for a max over layers taken inside each bootstrap replicate)."""

from __future__ import annotations

from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.expectations.decision import interval_verdict, verdict_outcome, verdict_words
from fact_locator.expectations.excerpts import facts_count
from fact_locator.expectations.outcome import Outcome
from fact_locator.expectations.parsing import Threshold

__all__ = ["TWO_LEVEL_MAX", "aggregate_decision", "bound_name", "curve_facts", "interval_outcome"]

# How the max-over-layers verdicts say what they rest on.
TWO_LEVEL_MAX = "bootstrap over facts and their noise draws, the max over layers taken in each replicate"


def bound_name(threshold: Threshold) -> str:
    return "lower" if threshold.op in (">=", ">") else "upper"


def interval_outcome(ident: str, what: str, agg: Aggregate, key: str, threshold: Threshold, level: float,
                     observed: dict[str, Any]) -> Outcome:
    """Compare the bound of a bootstrap interval of the aggregate with `threshold`."""
    interval = agg.interval(key, level)
    if interval is None:
        return Outcome(False, f"{ident}: no per-fact values for a {level:.0%} interval of {what} "
                              "(the aggregate was built without intervals)", {"level": level, **observed})
    bound = bound_name(threshold)
    value = interval.low if bound == "lower" else interval.high
    passed = threshold.holds(value)
    message = (
        f"{ident}: {what} = {interval.estimate:.3f}, {level:.0%} interval [{interval.low:.3f}, {interval.high:.3f}] "
        f"over {facts_count(interval.n)} (bootstrap, {interval.resamples} resamples); expected the {bound} bound "
        f"{threshold}: {'holds' if passed else 'does not hold'}"
    )
    return Outcome(passed, message, {**observed, "estimate": interval.estimate, "low": interval.low, "high": interval.high,
                                     "level": level, "n_facts": interval.n, "op": threshold.op,
                                     "threshold": threshold.value})


def aggregate_decision(ident: str, what: str, agg: Aggregate, key: str, threshold: Threshold, level: float,
                       observed: dict[str, Any]) -> Outcome | None:
    """Decide `what` (the aggregate's value under `key`) against `threshold` at `level` by the
    two-level bootstrap (facts, then each fact's noise draws), else, for traces that kept no
    draws, by the bootstrap over facts alone (the message says which); None without either."""
    interval = agg.two_level_interval(key, level)
    how = "bootstrap over facts and their noise draws"
    if interval is None:
        interval = agg.interval(key, level)
        how = "bootstrap over facts only: the traces kept no per-sample values"
    if interval is None:
        return None
    verdict = interval_verdict(threshold, interval.low, interval.high)
    message = (
        f"{ident}: {what} = {interval.estimate:.3f} over {facts_count(interval.n)}; expected {threshold}: "
        f"{verdict_words(verdict, level, facts_count(interval.n))}: [{interval.low:.3f}, {interval.high:.3f}] ({how})"
    )
    return verdict_outcome(verdict, message, {**observed, "estimate": interval.estimate, "low": interval.low,
                                              "high": interval.high, "n_facts": interval.n, "op": threshold.op,
                                              "threshold": threshold.value, "two_level": "facts only" not in how})


def curve_facts(agg: Aggregate, kind: str, category: str) -> int:
    """How many facts have a position in `category` (those the curve's mean is over)."""
    rows = agg.curve_draws.get(Aggregate.interval_key(kind, category), ())
    return sum(1 for row in rows if float(row.weight) > 0) if rows else agg.n_facts
