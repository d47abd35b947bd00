"""Comparing a bootstrap interval's bound, rather than the point estimate, with a threshold:
the lower bound for >= / >, the upper one for <= / <."""

from __future__ import annotations

from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.expectations.excerpts import facts_count
from fact_locator.expectations.outcome import Outcome
from fact_locator.expectations.parsing import Threshold

__all__ = ["bound_name", "interval_outcome"]


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
