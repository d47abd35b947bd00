"""The model and the method of a run as the reports' headers name them, and the badge of an
approximate (attribution patching) trace."""

from __future__ import annotations

from typing import Any

from fact_locator.tracing.trace import Trace

__all__ = ["APPROXIMATE_BADGE", "is_approximate", "model_summary", "run_method"]

APPROXIMATE_BADGE = "approximate (AtP)"


def model_summary(model: dict[str, Any]) -> dict[str, str]:
    fingerprint = str(model.get("fingerprint", "") or "")
    return {
        "name": str(model.get("name", "?")),
        "architecture": str(model.get("architecture", "?")),
        "n_layers": str(model.get("n_layers", "?")),
        "fingerprint": fingerprint[:12],
        "dtype": str(model.get("dtype", "")),
    }


def is_approximate(trace: Trace | None) -> bool:
    """A trace made by attribution patching (settings["method"] starts with 'atp')."""
    return trace is not None and str(trace.settings.get("method", "")).startswith("atp")


def run_method(settings: dict[str, Any], traces: list[Trace | None]) -> dict[str, str]:
    """metric, corruption and method of a run: its settings, else its first trace's."""
    first = next((t for t in traces if t is not None), None)
    trace_settings = first.settings if first is not None else {}
    method = str(settings.get("method") or ("atp" if is_approximate(first) else "exact"))
    if any(is_approximate(t) for t in traces):
        method = "atp"
    return {
        "metric": str(settings.get("metric") or trace_settings.get("metric") or (first.metric if first else "prob")),
        "corruption": str(settings.get("corruption") or trace_settings.get("corruption") or "gaussian"),
        "method": method,
    }
