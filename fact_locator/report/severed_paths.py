"""A fact's severed paths (how much of the hidden effect flows through MLP and attention) as text."""

from __future__ import annotations

from fact_locator.report.percentages import pct
from fact_locator.results import FactResult
from fact_locator.tracing.trace import SeveredPaths

__all__ = ["severed_of", "severed_text"]


def severed_of(fact: FactResult) -> SeveredPaths | None:
    """A fact's severed paths: recorded by --fl-severed, or carried by its trace (trace --severed)."""
    if fact.severed is not None:
        return fact.severed
    return fact.trace.severed if fact.trace is not None else None


def severed_text(severed: SeveredPaths | None) -> str:
    """'through MLP 62.5%, through attention 12.5% (hidden peak L4, IE 0.300)'."""
    if severed is None:
        return ""
    text = f"through MLP {pct(severed.shares.get('mlp'))}, through attention {pct(severed.shares.get('attn'))}"
    return text + f" (hidden peak L{severed.peak_layer}, IE {severed.peak_ie:.3f})"
