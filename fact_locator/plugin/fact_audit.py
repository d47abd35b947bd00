"""What a fact-set item (and a fixture of a Python audit) does: the audit's verdicts
(`fact_locator.audit_flow`) become skips, failures, records and JUnit properties. A fact is
traced with its companions (the later facts of its set that this session traces: the engine
batches same-shape facts), and under `samples: auto` the first item of a set that needs a
trace runs the rounds of every fact of the set this session traces together
(`round_mates`): each round extends the facts still open in shared forwards, and the later
items find their traces ready. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fact_locator.audit_flow import FactVerdict, aggregate_verdicts, audit_fact, enters_aggregate, severed_once, will_trace

if TYPE_CHECKING:
    from fact_locator.aggregate import Aggregate
    from fact_locator.facts import Fact
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.plugin.session import FactLocatorSession
    from fact_locator.tracing.trace import Trace

__all__ = ["aggregate_for", "companions", "round_mates", "severed_fact", "trace_fact", "trace_properties"]


def trace_fact(fl: FactLocatorSession, factset: FactSet, spec: FactSpec, item: pytest.Item | None = None) -> Trace:
    """Trace one fact of a set under the set's unknown rule: skip (pytest.skip), fail
    (pytest.fail) or trace anyway. Records the trace and, on `item`, JUnit properties."""
    fl.record_settings(factset)
    rule = fl.unknown_rule(factset)
    verdict = audit_fact(fl.locator, factset, spec, rule, companions(fl, factset, spec),
                         round_mates(fl, factset, spec))
    _record(fl, factset, verdict)
    if verdict.error is not None:
        raise verdict.error
    if verdict.trace is None:
        assert verdict.clean is not None
        if item is not None:
            item.user_properties.append(("p_clean", f"{verdict.clean.p_target:.4f}"))
        if rule == "skip":
            pytest.skip(f"unknown fact {spec.id}: {verdict.reason}")
        pytest.fail(f"{fl.relpath(factset.path)}:{spec.line}: unknown fact {spec.id}: {verdict.reason}", pytrace=False)
    severed_fact(fl, factset, spec)
    if item is not None:
        item.user_properties.extend(trace_properties(verdict.trace))
    return verdict.trace


def _record(fl: FactLocatorSession, factset: FactSet, verdict: FactVerdict) -> None:
    """Record a verdict in the session's results (a traced fact with its trace, an unknown
    one with its clean run)."""
    if verdict.status == "traced":
        fl.record_fact(factset, verdict.spec, trace=verdict.trace, status="traced", reason=verdict.reason)
    elif verdict.status == "unknown":
        fl.record_fact(factset, verdict.spec, clean=verdict.clean, status="unknown", reason=verdict.reason)
    else:
        fl.record_fact(factset, verdict.spec, status="error", reason=verdict.reason)


def companions(fl: FactLocatorSession, factset: FactSet, spec: FactSpec, every: bool = False) -> Iterator[Fact]:
    """The facts after `spec` in the set that this session will trace (selected, or `every`
    one for an aggregate; known, unless the set traces unknown facts), lazily: the locator
    traces those that can share forwards with `spec` together with it. None where the
    set's items may run on other xdist workers too (they would trace them again): see
    `FactLocatorSession.note_collected`."""
    return (other.fact for other in _later_traced(fl, factset, spec, every))


def round_mates(fl: FactLocatorSession, factset: FactSet, spec: FactSpec, every: bool = False) -> Iterator[FactSpec]:
    """Under `samples: auto`, the facts whose rounds run with `spec`'s: the first time a fact
    of the set is traced, every later one this session will trace (as `companions`) whose
    rounds have not run yet. Lazy: read only once `spec` is traced (an unknown fact runs no
    rounds). Under xdist, where a set's items may be spread over workers, none: each worker
    runs the rounds of the facts it was given, one at a time."""
    path = fl.relpath(factset.path)
    if fl.locator.adaptive_max(factset) is None or (path, spec.id) in fl.rounds_done:
        return
    fl.rounds_done.add((path, spec.id))
    for other in _later_traced(fl, factset, spec, every):
        if (path, other.id) not in fl.rounds_done:
            fl.rounds_done.add((path, other.id))
            yield other


def _later_traced(fl: FactLocatorSession, factset: FactSet, spec: FactSpec, every: bool) -> Iterator[FactSpec]:
    if not fl.sets_stay_together:
        return
    rule = fl.unknown_rule(factset)
    wanted = fl.selected_facts.get(fl.relpath(factset.path), set())
    later = factset.facts[[s.id for s in factset.facts].index(spec.id) + 1 :]
    for other in later:
        if (every or other.id in wanted) and will_trace(fl.locator, other.fact, factset, rule):
            yield other


def severed_fact(fl: FactLocatorSession, factset: FactSet, spec: FactSpec) -> None:
    """--fl-severed: the severed-path shares of a traced fact, once per fact."""
    if not fl.options["severed"]:
        return
    severed = severed_once(fl.locator, factset, spec, fl.severed_done, (fl.relpath(factset.path), spec.id))
    if severed is not None:
        fl.record_severed(factset, spec, severed)


def trace_properties(trace: Trace) -> list[tuple[str, str]]:
    props = [("te", f"{trace.te:.4f}"), ("p_clean", f"{trace.p_clean:.4f}")]
    for kind in trace.kinds:
        layer, token, value = trace.peak(kind)
        props.append((f"peak_{kind}", f"L{layer} T{token} {value:.3f}"))
    return props


def aggregate_for(fl: FactLocatorSession, factset: FactSet) -> Aggregate:
    """ATE/AIE over the facts that enter the set's aggregate (`audit_flow.enters_aggregate`);
    every fact it needs is traced (through the cache), selected by -k or not. Skips when no
    fact qualifies."""
    from fact_locator.aggregate import aggregate

    cached = fl.aggregates.get(fl.relpath(factset.path))
    if cached is not None:
        return cached
    fl.record_settings(factset)
    rule = fl.unknown_rule(factset)
    traces, counts = [], {"unknown": 0, "error": 0}
    for verdict in aggregate_verdicts(fl.locator, factset, rule, lambda s: companions(fl, factset, s, every=True),
                                      lambda s: round_mates(fl, factset, s, every=True)):
        _record(fl, factset, verdict)
        if not enters_aggregate(verdict):
            counts[verdict.status] += 1
            continue
        severed_fact(fl, factset, verdict.spec)
        assert verdict.trace is not None
        traces.append(verdict.trace)
    if not traces:
        pytest.skip(f"fact set {factset.name}: no known fact to aggregate ({counts['unknown']} unknown, "
                    f"{counts['error']} errors)")
    agg = aggregate(traces, intervals=True)
    fl.aggregates[fl.relpath(factset.path)] = agg
    fl.record_aggregate(factset, agg)
    return agg


