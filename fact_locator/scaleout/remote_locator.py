"""`PrefetchedLocator`: the driver's `Locator` in a Ray run. It answers the items' questions
(clean run, noise, trace) from what the actors sent (`Prefetched`) and never loads a model:
`load()` gives the actors' identity (`RemoteModel`), so the header and the results name the
weights the actors traced. A fact that no actor was asked about is a usage error, not a
silent local trace."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fact_locator.errors import UsageError
from fact_locator.locator import CleanCheck, Locator
from fact_locator.scaleout.work import actor_stamp, rebuild_error

if TYPE_CHECKING:
    from fact_locator.facts import Fact
    from fact_locator.factset import FactSet
    from fact_locator.models.identity import ModelIdentity
    from fact_locator.scaleout.prefetch import Prefetched
    from fact_locator.scaleout.work import FactOutcome
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.trace import NoiseInfo, SeveredPaths, Trace

__all__ = ["PrefetchedLocator", "RemoteModel"]


@dataclass(frozen=True)
class RemoteModel:
    """A model loaded on the Ray actors: what the results record about it."""

    identity: ModelIdentity
    device: str

    @property
    def n_layers(self) -> int:
        return self.identity.n_layers


class PrefetchedLocator(Locator):
    """A `Locator` whose answers came from Ray actors. Build it with `adopt` from the
    session's own (not yet used) Locator, so every option stays as the session set it."""

    prefetched: Prefetched
    _told: set[tuple[str, str]]

    @classmethod
    def adopt(cls, base: Locator, prefetched: Prefetched) -> PrefetchedLocator:
        new = cls.__new__(cls)
        new.__dict__.update(base.__dict__)
        new.prefetched = prefetched
        new._told = set()
        for info in prefetched.infos:
            if info.identity is not None:
                new._models.setdefault(base.model_spec, RemoteModel(info.identity, info.device))  # type: ignore[arg-type]
        return new

    # -- models: the actors' -----------------------------------------------------------------------
    def load(self, spec: str | None = None) -> Any:
        spec = spec or self.model_spec
        if spec not in self._models:
            raise UsageError(f"model {spec!r}: under --fl-executor ray the driver does not load models, "
                             "and no Ray actor reported this one")
        return self._models[spec]

    # -- answers -----------------------------------------------------------------------------------
    def _outcome(self, fact: Fact, factset: FactSet | None) -> FactOutcome:
        outcome = self.prefetched.outcome(str(factset.path), fact.id or "") if factset is not None else None
        if outcome is None:
            where = f"fact set {factset.name!r}" if factset is not None else "no fact set"
            raise UsageError(f"fact {fact.id or fact.subject!r} ({where}) was not sent to the Ray actors: "
                             "under --fl-executor ray only the collected fact-set items are traced")
        return outcome

    def noise_for(self, factset: FactSet | None, settings: TraceSettings | None = None) -> NoiseInfo | None:
        from fact_locator.tracing.trace import NoiseInfo

        settings = settings or self.settings_for(factset)
        if settings.noise is not None:
            return NoiseInfo(std=float(settings.noise), calibration="given", source="given")
        if factset is None or settings.noise_calibration == "fact":
            return None
        path = str(factset.path)
        for (where, _), outcome in self.prefetched.outcomes.items():
            if where == path and outcome.noise is not None:
                return outcome.noise
        raise UsageError(f"fact set {factset.name!r}: no Ray actor calibrated its noise")

    def clean(self, fact: Fact, factset: FactSet | None = None, min_p_clean: float | None = None) -> CleanCheck:
        outcome = self._outcome(fact, factset)
        if outcome.clean is None:
            if outcome.error is not None:
                raise rebuild_error(outcome.error)
            raise UsageError(f"fact {fact.id!r}: the Ray actors ran no clean run for it")
        floor = float(min_p_clean if min_p_clean is not None else (factset.min_p_clean if factset is not None else 0.0))
        return replace(outcome.clean, min_p_clean=floor)

    def trace(self, fact: Fact, factset: FactSet | None = None, settings: TraceSettings | None = None,
              companions: Iterable[Fact] = ()) -> Trace:
        outcome = self._outcome(fact, factset)
        key = (outcome.factset_path, outcome.fact_id)
        trace = self.prefetched.traces.get(key)
        if trace is None:
            if outcome.error is not None:
                raise rebuild_error(outcome.error)
            raise UsageError(f"fact {fact.id!r}: the Ray actors traced no trace for it (unknown to the model?)")
        with self._lock:
            first = key not in self._told
            self._told.add(key)
            if first:
                self.stats["cached" if key in self.prefetched.from_cache else "traced"] += 1
        if first and self.on_trace is not None:
            self.on_trace(fact, trace, key in self.prefetched.from_cache)
        return trace

    def extend(self, pairs: Sequence[tuple[Fact, Trace]], samples: int, factset: FactSet | None = None) -> list[Trace]:
        """Under `samples: auto` the actors ran the rounds: every trace here holds the draws its
        verdict needs, so the driver's own look at it extends nothing. A trace that would need
        more is a usage error (the driver never runs a model), not a silent local trace."""
        short = [fact.id or fact.subject for fact, trace in pairs if (trace.n_samples or 0) < samples]
        if short:
            raise UsageError(f"fact {short[0]!r}: its samples: auto rounds need {samples} draws, and under "
                             "--fl-executor ray only the Ray actors extend traces")
        return [trace for _fact, trace in pairs]

    def severed(self, fact: Fact, factset: FactSet | None = None) -> SeveredPaths:
        """The severed paths an actor computed for this fact (--fl-severed), or its error."""
        outcome = self._outcome(fact, factset)
        key = (outcome.factset_path, outcome.fact_id)
        found = self.prefetched.severed.get(key)
        if found is not None:
            return found
        error = self.prefetched.severed_errors.get(key)
        if error is not None:
            raise rebuild_error(error)
        raise UsageError(f"fact {fact.id!r}: the Ray actors computed no severed paths for it "
                         "(the driver asks for them only under --fl-severed)")

    def fact_stamps(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(fact-set path, fact id) -> (worker, device) for each fact an actor traced in this
        run, as `FactResult.worker` / `.device` record them (facts from the cache keep the run's)."""
        return {key: actor_stamp(name, self.prefetched.infos) for key, name in self.prefetched.traced_by.items()}
