"""Fractions shown as percentages, with an aggregate's stored confidence interval."""

from __future__ import annotations

from fact_locator.aggregate import Aggregate

__all__ = ["interval_text", "pct"]


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def interval_text(agg: Aggregate | None, key: str, scale: float = 100.0, unit: str = "%") -> str:
    """' [low, high] 95%' for an aggregate's stored interval, '' without one."""
    if agg is None or key not in agg.intervals:
        return ""
    iv = agg.intervals[key]
    level = float(iv.get("level", 0.95))
    return f" [{scale * float(iv['low']):.1f}{unit}, {scale * float(iv['high']):.1f}{unit}] at {level:.0%}"
