"""Before the items run: every fact they need, traced by the Ray actors into the local cache.

1. Plan: the actors run each selected fact's clean run (skip/fail decide by it; under `trace`
   the known rule in force labels the traced facts) and compute its cache key and its set's
   noise; the driver never loads the model.
2. The driver reads the facts the cache already has (a rerun after a killed run resumes here).
3. Trace: the rest go out in chunks of one fact set; each trace is written to the cache
   (atomically) as its chunk comes back. Under `samples: auto` the actors run the rounds
   too (`ray_actors.TraceWorker`), and a trace the cache holds whose verdict is still open
   (`open_rounds`) goes out with its chunk, to be extended from the draws it has.
4. --fl-severed: the traced facts' severed paths come back with their traces; those of the
   facts the cache had go out as severed-only chunks. They are not cached (in-process they
   are not either): the driver keeps them for the run.

Each fact is kept once, under (fact-set path, fact id): a chunk retried after its actor
died answers the same facts again and overwrites them, it does not add any.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fact_locator.scaleout.work import PLAN, SEVERED, TRACE, ActorInfo, FactOutcome, WorkUnit

if TYPE_CHECKING:
    from fact_locator.cache import TraceCache
    from fact_locator.factset import FactSet
    from fact_locator.scaleout.ray_executor import RayExecutor
    from fact_locator.tracing.trace import SeveredPaths, Trace

__all__ = ["OpenRounds", "Prefetched", "Selection", "chunk_units", "prefetch"]

# Facts per trace unit at most: small units stream back soon and spread evenly; a chunk
# still holds enough same-shape facts for the engine to batch on a GPU.
MAX_TRACE_CHUNK = 8
MAX_PLAN_CHUNK = 64

FactKey = tuple[str, str]  # (fact-set path as given to the actors, fact id)
# open_rounds(factset, fact id, cached trace): must its samples: auto rounds go on?
OpenRounds = Callable[["FactSet", str, "Trace"], bool]


@dataclass(frozen=True)
class Selection:
    """The facts of one set that the run needs, and the set's unknown rule."""

    factset: FactSet
    fact_ids: tuple[str, ...]
    rule: str
    starts: tuple[tuple[str, str], ...] = ()  # (fact id, trace JSON): rounds go on from these


@dataclass
class Prefetched:
    """What the driver knows after the actors ran: each fact's outcome (clean run, key,
    noise, error), its trace, which traces came from the cache rather than an actor, which
    actor traced the others, and (--fl-severed) each traced fact's severed paths."""

    outcomes: dict[FactKey, FactOutcome] = field(default_factory=dict)
    traces: dict[FactKey, Trace] = field(default_factory=dict)
    from_cache: set[FactKey] = field(default_factory=set)
    infos: list[ActorInfo] = field(default_factory=list)
    traced_by: dict[FactKey, str] = field(default_factory=dict)
    severed: dict[FactKey, SeveredPaths] = field(default_factory=dict)
    severed_errors: dict[FactKey, tuple[str, str]] = field(default_factory=dict)

    def outcome(self, factset_path: str, fact_id: str) -> FactOutcome | None:
        return self.outcomes.get((factset_path, fact_id))


def chunk_units(phase: str, selections: Sequence[Selection], actors: int, most: int,
                severed: bool = False) -> list[WorkUnit]:
    """Each selection cut into units of at most `most` facts, about two per actor per set."""
    units = []
    for sel in selections:
        ids = list(dict.fromkeys(sel.fact_ids))
        if not ids:
            continue
        size = max(1, min(most, math.ceil(len(ids) / max(1, 2 * actors))))
        text = sel.factset.path.read_text(encoding="utf-8-sig")
        starts = dict(sel.starts)
        for start in range(0, len(ids), size):
            chunk = tuple(ids[start:start + size])
            units.append(WorkUnit(phase, str(sel.factset.path), text, chunk, sel.rule, severed=severed,
                                  starts=tuple((i, starts[i]) for i in chunk if i in starts)))
    return units


def prefetch(executor: RayExecutor, selections: Iterable[Selection], cache: TraceCache,
             severed: bool = False, open_rounds: OpenRounds | None = None) -> Prefetched:
    """Plan, read the cache, trace the rest (with `severed`: and every traced fact's severed
    paths); see the module docstring. `open_rounds(factset, fact_id, trace)`: under
    `samples: auto`, whether a cached trace's rounds must go on (`audit_flow.rounds_open`)."""
    from fact_locator.tracing.trace import Trace

    selections = list(selections)
    result = Prefetched(infos=list(executor.infos))
    actors = max(1, len(executor.actors))

    def planned(unit: WorkUnit, outcomes: list[FactOutcome]) -> None:
        for outcome in outcomes:
            result.outcomes[(outcome.factset_path, outcome.fact_id)] = outcome

    executor.run(chunk_units(PLAN, selections, actors, MAX_PLAN_CHUNK), planned)

    todo: list[Selection] = []
    for sel in selections:
        path = str(sel.factset.path)
        wanted, starts = [], []
        for fact_id in dict.fromkeys(sel.fact_ids):
            outcome = result.outcomes.get((path, fact_id))
            unknown = sel.rule != "trace" and outcome is not None and outcome.clean is not None and not outcome.clean.known
            if outcome is None or outcome.error is not None or unknown:
                continue  # the item reports the error or (skip/fail) the unknown fact from the plan
            hit = cache.get(outcome.key) if outcome.key is not None else None
            if hit is not None and open_rounds is not None and open_rounds(sel.factset, fact_id, hit):
                wanted.append(fact_id)  # its verdict is still open: the actors extend it
                starts.append((fact_id, hit.to_json()))
            elif hit is not None:
                # The key ignores ids (they do not change the numbers): label the trace as asked.
                result.traces[(path, fact_id)] = hit if hit.fact_id == fact_id else replace(hit, fact_id=fact_id)
                result.from_cache.add((path, fact_id))
            else:
                wanted.append(fact_id)
        if wanted:
            todo.append(Selection(sel.factset, tuple(wanted), sel.rule, tuple(starts)))

    def traced(unit: WorkUnit, outcomes: list[FactOutcome]) -> None:
        for outcome in outcomes:
            key = (outcome.factset_path, outcome.fact_id)
            plan = result.outcomes.setdefault(key, outcome)
            if outcome.trace_json is None:
                plan.error = outcome.error or ("TraceError", "the Ray actor returned no trace for this fact")
                continue
            trace = Trace.from_json(outcome.trace_json)
            if outcome.key is not None:
                cache.put(outcome.key, trace)  # at once: a killed run keeps what came back
            result.traces[key] = trace
            result.traced_by[key] = outcome.actor
            keep_severed(outcome)

    def keep_severed(outcome: FactOutcome) -> None:
        key = (outcome.factset_path, outcome.fact_id)
        if outcome.severed is not None:
            result.severed[key] = outcome.severed
        elif outcome.severed_error is not None or outcome.error is not None:
            result.severed_errors[key] = outcome.severed_error or outcome.error  # type: ignore[assignment]

    def severed_back(unit: WorkUnit, outcomes: list[FactOutcome]) -> None:
        for outcome in outcomes:
            keep_severed(outcome)

    executor.run(chunk_units(TRACE, todo, actors, MAX_TRACE_CHUNK, severed=severed), traced)
    if severed:
        cached = [Selection(sel.factset, tuple(f for f in dict.fromkeys(sel.fact_ids)
                                               if (str(sel.factset.path), f) in result.from_cache), sel.rule)
                  for sel in selections]
        executor.run(chunk_units(SEVERED, cached, actors, MAX_TRACE_CHUNK), severed_back)
    return result
