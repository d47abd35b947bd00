"""Extending a trace with more noise draws: which traces a tracer may extend, and the trace
that draws n..m-1 added to a trace of draws 0..n-1 make.

Draw i's noise depends on the seed and i only (`corruption.make_noise`), so a trace of m
draws made as n and then m - n more holds the same draws as one made at once, and its means
are computed the same way (`SampleEffects`, float64 over the engine's float32 values): the
two agree to the engine's float rounding. `Tracer.extend` / `extend_many` run the new draws
through the engine's usual batches."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fact_locator.errors import UsageError
from fact_locator.tracing.sample_effects import SampleEffects
from fact_locator.tracing.trace import Trace

if TYPE_CHECKING:
    from fact_locator.models.loading import LoadedModel
    from fact_locator.tracing.prompt import PreparedPrompt
    from fact_locator.tracing.settings import TraceSettings

__all__ = ["check_extendable", "extended_trace", "measured_fields"]

# Settings that do not change which draws a trace holds or what they measure.
_FREE_SETTINGS = ("samples", "batch_size")


def check_extendable(trace: Trace, loaded: LoadedModel, settings: TraceSettings, prepared: PreparedPrompt, samples: int) -> None:
    """Raise UsageError (one line, naming the fact) unless `trace` is this tracer's trace of
    `prepared` with fewer than or exactly `samples` draws kept."""
    label = prepared.fact.label
    if trace.sample_effects is None:
        raise UsageError(f"fact {label!r}: the trace keeps no per-sample effects (written before they were kept, "
                         "or not an exact trace); trace it afresh")
    if samples < trace.sample_effects.n:
        raise UsageError(f"fact {label!r}: cannot extend a trace of {trace.sample_effects.n} samples to {samples}")
    if trace.model != loaded.identity:
        raise UsageError(f"fact {label!r}: the trace is of model {trace.model.name!r}, not of the loaded {loaded.identity.name!r}")
    if (trace.prompt, trace.subject, trace.target, trace.token_ids) != \
            (prepared.fact.prompt, prepared.fact.subject, prepared.fact.target, prepared.token_ids[: prepared.prompt_length]):
        raise UsageError(f"fact {label!r}: the trace is of another fact ({trace.prompt!r} -> {trace.target!r})")
    ours = _fixed(settings.to_dict() | {"device": loaded.device})
    theirs = _fixed(trace.settings)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        key = differ[0]
        raise UsageError(f"fact {label!r}: the trace was made with {key} = {theirs.get(key)!r}, this tracer uses {ours.get(key)!r}")


def measured_fields(effects: SampleEffects) -> dict[str, Any]:
    """The Trace fields its draws give: p_corrupt, corrupt_value and the IE grids."""
    return {
        "p_corrupt": effects.p_corrupt(),
        "corrupt_value": effects.corrupt_value(),
        "ie": {kind: effects.ie_grid(kind) for kind in effects.restored},
        "sample_effects": effects,
    }


def extended_trace(trace: Trace, more: SampleEffects | None, samples: int, timings: dict[str, float]) -> Trace:
    """`trace` with the draws `more` added (None: no more to add, where symmetric token
    replacement ran out of subjects), as asked for `samples` draws; the time spent adds up."""
    assert trace.sample_effects is not None
    effects = trace.sample_effects if more is None else trace.sample_effects.concat(more)
    spent = {key: trace.timings.get(key, 0.0) + timings.get(key, 0.0) for key in ("clean", "corrupt", "restore", "total")}
    return replace(trace, **measured_fields(effects), settings=trace.settings | {"samples": samples},
                   timings=trace.timings | timings | spent)


def _fixed(settings: dict[str, Any]) -> dict[str, Any]:
    # A trace from before the target_metric setting read the first target token.
    settings = {"target_metric": "first", **settings}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if k not in _FREE_SETTINGS}
