"""Where the effects are: the kinds a run traced, a trace's peak site, an aggregate's max AIE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fact_locator.aggregate import Aggregate
from fact_locator.tracing.trace import Trace

__all__ = ["KIND_ORDER", "Peak", "aggregate_kinds", "max_aie", "peak", "trace_kinds"]

KIND_ORDER = ("hidden", "mlp", "attn")


def _kind_key(kinds: list[str]) -> Callable[[str], tuple[int, int]]:
    return lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), kinds.index(k))


def trace_kinds(traces: list[Trace | None]) -> list[str]:
    """Kinds traced by any of `traces`: hidden, mlp, attn first, then the others as met."""
    seen: list[str] = []
    for trace in traces:
        if trace is None:
            continue
        for kind in trace.kinds:
            if kind not in seen:
                seen.append(kind)
    return sorted(seen, key=_kind_key(seen))


def aggregate_kinds(agg: Aggregate | None) -> list[str]:
    if agg is None:
        return []
    kinds = list(agg.aie)
    return sorted(kinds, key=_kind_key(kinds))


@dataclass(frozen=True)
class Peak:
    layer: int
    token: int
    value: float
    token_text: str

    def __str__(self) -> str:
        return f"L{self.layer} {self.token_text!r} {self.value:.3f}"


def peak(trace: Trace | None, kind: str) -> Peak | None:
    if trace is None or kind not in trace.ie:
        return None
    grid = trace.ie[kind]
    if not grid or not any(grid):
        return None
    layer, token, value = trace.peak(kind)
    if value == float("-inf"):
        return None
    text = trace.tokens[token] if 0 <= token < len(trace.tokens) else f"#{token}"
    return Peak(layer, token, value, text)


def max_aie(agg: Aggregate | None, kind: str, category: str) -> tuple[int, float] | None:
    if agg is None:
        return None
    try:
        return agg.max_aie(kind, category)
    except (KeyError, ValueError):
        return None
