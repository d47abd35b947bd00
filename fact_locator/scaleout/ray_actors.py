"""`TraceWorker`: what one Ray actor runs. It builds a `Locator` once (the model loads on first
use and stays loaded), and for each `WorkUnit` (a chunk of one fact set) returns one
`FactOutcome` per fact: the clean run, the cache key and the noise, and in the trace phase the
trace, with the facts of the chunk handed to the Locator as companions so that the engine's
batching of same-shape facts is kept. Under `samples: auto` the actor runs the rounds too: the
chunk's facts take their first round, then the rounds extend those still open together, and
the final traces go back (the driver never runs a model, so the extensions run where the
model and the first draws are). Under --fl-severed it computes each traced fact's
severed paths too, once per fact as the in-process run does (a SEVERED unit: those alone, for
facts the driver's cache had). The actor never writes a cache (the driver alone does).

A plain class: `RayExecutor` wraps it with `ray.remote`, so it can be tested without Ray.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fact_locator.errors import FactLocatorError, FactSetError
from fact_locator.scaleout.work import PLAN, SEVERED, TRACE, ActorInfo, FactOutcome, LocatorConfig, WorkUnit

if TYPE_CHECKING:
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.locator import Locator
    from fact_locator.tracing.settings import TraceSettings

__all__ = ["TraceWorker"]


class TraceWorker:
    """One actor's state: its name, its `Locator` and the fact sets it has parsed."""

    def __init__(self, config: LocatorConfig, name: str):
        self.config = config
        self.name = name
        if config.threads is not None:
            import torch

            torch.set_num_threads(config.threads)
        self._locator: Locator | None = None
        self._factsets: dict[tuple[str, str], FactSet] = {}

    @property
    def locator(self) -> Locator:
        from fact_locator.locator import Locator

        if self._locator is None:
            c = self.config
            self._locator = Locator(model=c.model, device=c.device, dtype=c.dtype, overrides=dict(c.overrides),
                                    use_cache=False, model_from_factset=c.model_from_factset, method=c.method,
                                    max_samples=c.max_samples)
        return self._locator

    def info(self) -> ActorInfo:
        """Load the session's model (once) and say which weights and device this actor has."""
        node, gpus = _node_ip(), _gpu_ids()
        try:
            loaded = self.locator.load()
        except FactLocatorError as exc:
            return ActorInfo(self.name, node, os.getpid(), self.config.device, error=str(exc), gpus=gpus)
        return ActorInfo(self.name, node, os.getpid(), loaded.device, identity=loaded.identity, gpus=gpus)

    def run(self, unit: WorkUnit) -> list[FactOutcome]:
        """The unit's facts, each with its clean run, key, noise and (TRACE) trace or error."""
        outcomes = [FactOutcome(unit.factset_path, fact_id, actor=self.name) for fact_id in unit.fact_ids]
        try:
            factset = self._factset(unit)
            locator = self.locator
            settings = locator.settings_for(factset)
            spec = locator.model_for(factset)
            noise = locator.noise_for(factset, settings)
        except FactLocatorError as exc:  # the set as a whole cannot be traced: each fact says why
            for outcome in outcomes:
                outcome.error = (type(exc).__name__, str(exc))
            return outcomes
        specs = {}
        for outcome in outcomes:
            outcome.model, outcome.noise = spec, noise
            try:
                fact_spec = factset.fact(outcome.fact_id)
                specs[outcome.fact_id] = fact_spec
                if unit.phase == PLAN:  # under `unknown: trace` too: the known rule labels what was traced
                    outcome.clean = locator.clean(fact_spec.fact, factset)
                outcome.key = locator.cache_key(locator.fact_for(fact_spec.fact, factset, settings), settings, noise, spec,
                                                adaptive=locator.adaptive_max(factset) is not None)
            except (FactLocatorError, KeyError) as exc:
                outcome.error = _error(exc)
        if unit.phase == TRACE:
            self._trace(unit, factset, settings, specs, [o for o in outcomes if o.error is None])
        if unit.phase == SEVERED or (unit.phase == TRACE and unit.severed):
            for outcome in outcomes:
                if outcome.error is None:
                    try:
                        outcome.severed = locator.severed(specs[outcome.fact_id].fact, factset)
                    except FactLocatorError as exc:  # the fact's severed item fails with it, not its trace
                        outcome.severed_error = _error(exc)
        return outcomes

    def _trace(self, unit: WorkUnit, factset: FactSet, settings: TraceSettings, specs: dict[str, FactSpec],
               todo: list[FactOutcome]) -> None:
        """The first round of each fact (or the trace the driver sent in `unit.starts`), then,
        under `samples: auto`, the rounds of all of them together (`audit_flow.settle_facts`),
        as the plugin runs them in-process: the rounds' extensions run here, beside the model."""
        from fact_locator.audit_flow import settle_facts
        from fact_locator.tracing.trace import Trace

        locator = self.locator
        starts = dict(unit.starts)
        traced: list[tuple[FactOutcome, Trace]] = []
        for i, outcome in enumerate(todo):
            if outcome.fact_id in starts:
                traced.append((outcome, Trace.from_json(starts[outcome.fact_id])))
                continue
            # The later facts of the chunk: the Locator traces those that share forwards with this one.
            companions = (specs[o.fact_id].fact for o in todo[i + 1:] if o.fact_id not in starts)
            try:
                traced.append((outcome, locator.trace(specs[outcome.fact_id].fact, factset, settings, companions=companions)))
            except FactLocatorError as exc:
                outcome.error = _error(exc)
        if traced and locator.adaptive_max(factset) is not None:
            try:
                finals = settle_facts(locator, factset, [(specs[o.fact_id], t) for o, t in traced])
            except FactLocatorError:  # one fact's problem: each goes alone, and fails alone
                finals = []
                for outcome, trace in traced:
                    try:
                        finals.extend(settle_facts(locator, factset, [(specs[outcome.fact_id], trace)]))
                    except FactLocatorError as exc:
                        outcome.error = _error(exc)
                        finals.append(trace)
            traced = [(outcome, final) for (outcome, _first), final in zip(traced, finals)]
        for outcome, trace in traced:
            if outcome.error is None:
                outcome.trace_json = trace.to_json()

    def _factset(self, unit: WorkUnit) -> FactSet:
        from fact_locator.factset import parse_factset

        key = (unit.factset_path, unit.factset_text)
        if key not in self._factsets:
            self._factsets[key] = parse_factset(unit.factset_text, unit.factset_path)
        return self._factsets[key]

    def ping(self) -> str:
        return self.name


def _error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, KeyError):  # FactSet.fact: an id the driver's copy of the set has and this one lacks
        return (FactSetError.__name__, str(exc.args[0]))
    return (type(exc).__name__, str(exc))


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray (tests of the plain class)
        return "local"


def _gpu_ids() -> str:
    try:
        import ray

        return ",".join(str(g) for g in ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside Ray, or a CPU actor
        return ""
