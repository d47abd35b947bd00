"""The `Locator`: the one way to get traces. One per pytest session (and per xdist worker),
one per `fact-locator trace` or `sweep`. It loads each model once, traces facts through the
on-disk cache, picks the noise (by default the model's: one per model, as ROME, kept on disk
beside the traces) and runs the clean check (whose verdict the audit's rules in
`audit_flow.py` use). It knows nothing about pytest.

    locator = Locator(model="smollm2-135m", device="cpu")
    settings = locator.settings_for(factset)            # defaults < factset settings < overrides
    check = locator.clean(fact)                         # one forward: is the fact known?
    trace = locator.trace(fact, factset=factset)        # cached; the model's noise

torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fact_locator.audit_flow import CleanCheck
from fact_locator.errors import DeviceError, FactLocatorError, FactSetError, UsageError
from fact_locator.facts import Fact
from fact_locator.models.python_model import load_python_model
from fact_locator.settings import AUTO_SAMPLES, AUTO_START_SAMPLES, KNOWN_RULES, METHODS, PYTHON_PREFIX, UNKNOWN_RULES

if TYPE_CHECKING:
    from fact_locator.cache import TraceCache
    from fact_locator.factset import FactSet
    from fact_locator.models.loading import DeviceMap, LoadedModel
    from fact_locator.noise_cache import ReferenceStd
    from fact_locator.trace_progress import ProgressListener
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.trace import NoiseInfo, SeveredPaths, Trace
    from fact_locator.tracing.tracer import Progress, Tracer

__all__ = ["CleanCheck", "Locator", "UNKNOWN_RULES", "load_python_model"]


@dataclass
class _Lookup:
    """One fact on its way to a trace: as traced (`fact_for`), its noise, its cache and
    session keys, and its trace once found or computed (`fresh`: read from the cache and
    not yet remembered)."""

    fact: Fact
    noise: NoiseInfo
    key: str | None
    memo_key: Any
    trace: Trace | None
    fresh: bool


class Locator:
    """Loads models lazily, once; traces facts through a `TraceCache`.

    `overrides` are trace settings given on the command line or in the ini (they beat a fact
    set's `settings:`); `defaults` sit below the fact set's settings. `on_trace`, if given, is
    called with (fact, trace, cached) after every trace (the plugin counts with it);
    `on_progress` with a `TraceProgress` as an exact trace runs its batches (the plugin draws it).
    `trust_remote_code` lets a hub model run its own code (only `fact-locator trace` offers it);
    `load_progress` shows a download or conversion of the model on the terminal. `device_map`
    spreads a model larger than one device over several (`models.loading.DeviceMap`).
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        device: str = "auto",
        dtype: str = "float32",
        *,
        overrides: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        model_from_factset: bool = True,
        on_trace: Callable[[Fact, Trace, bool], None] | None = None,
        method: str = "exact",
        on_progress: ProgressListener | None = None,
        trust_remote_code: bool = False,
        load_progress: bool = False,
        device_map: DeviceMap | None = None,
        max_samples: int = 64,
    ):
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        self.method = method
        self.model_spec = model
        self.device = device
        self.dtype = dtype
        self.overrides = dict(overrides or {})
        self.defaults = dict(defaults or {})
        self.model_from_factset = model_from_factset
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.use_cache = use_cache
        self.on_trace = on_trace
        self.on_progress = on_progress
        self.trust_remote_code = trust_remote_code
        self.load_progress = load_progress
        self.device_map = device_map
        self.max_samples = max_samples
        self._models: dict[str, LoadedModel] = {}
        self._tracers: dict[tuple[str, Any], Tracer] = {}
        self._noise: dict[tuple[Any, ...], NoiseInfo] = {}
        self._reference_std: dict[str, ReferenceStd] = {}
        self._clean: dict[tuple[str, str, str, str, str], CleanCheck] = {}
        self._cache: TraceCache | None = None
        self._traces: dict[Any, Trace] = {}
        self._lock = threading.RLock()
        self.stats = {"traced": 0, "cached": 0, "clean_runs": 0}

    # -- models ------------------------------------------------------------------------------
    def model_for(self, factset: FactSet | None = None) -> str:
        """The model spec a fact set is traced with: the session's unless the set names one
        and the session's came from the default."""
        if factset is not None and self.model_from_factset and factset.settings.get("model"):
            spec = str(factset.settings["model"])
            if spec.startswith(PYTHON_PREFIX):
                # Importing code named in a data file would run it: only the user's own options may.
                raise FactSetError(
                    "settings.model: a python: model may only be given with --fl-model or the ini file, "
                    "never in a fact set", factset.path, factset.line)
            return spec
        return self.model_spec

    def load(self, spec: str | None = None) -> LoadedModel:
        """The loaded model for `spec` (default: the session's), loaded on first use."""
        spec = spec or self.model_spec
        with self._lock:
            if spec not in self._models:
                self._models[spec] = self._load(spec)
            return self._models[spec]

    def _load(self, spec: str) -> LoadedModel:
        if spec.startswith(PYTHON_PREFIX):
            if self.device_map is not None:
                raise DeviceError(f"{spec}: a device map applies to the models fact-locator loads; "
                                  "a python: model's function places its own layers")
            return load_python_model(spec, self.device, self.dtype)
        from fact_locator.models.loading import load_model

        placement = self.device_map
        return load_model(spec, device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code,
                          progress=self.load_progress,
                          device_map=placement.strategy if placement is not None else None,
                          max_memory=placement.max_memory if placement is not None else None,
                          offload_folder=placement.offload_folder if placement is not None else None)

    @property
    def loaded_models(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    # -- settings and noise ------------------------------------------------------------------
    def settings_for(self, factset: FactSet | None = None) -> TraceSettings:
        """Built-in < `defaults` < the fact set's `settings:` < `overrides`."""
        from fact_locator.tracing.settings import TraceSettings

        # Device and dtype belong to the Locator (one model load), not to a fact set.
        names = {f.name for f in fields(TraceSettings)} - {"device", "dtype"}
        merged: dict[str, Any] = {k: v for k, v in self.defaults.items() if k in names}
        if factset is not None:
            merged.update({k: v for k, v in factset.settings.items() if k in names})
        merged.update({k: v for k, v in self.overrides.items() if k in names})
        if merged.get("samples") == AUTO_SAMPLES:  # adaptive: traces start with the first round
            merged["samples"] = AUTO_START_SAMPLES
        return TraceSettings(**merged, device=self.device, dtype=self.dtype)

    def adaptive_max(self, factset: FactSet | None = None) -> int | None:
        """Under `samples: auto` (the overrides', else the fact set's, else the defaults'), the
        most draws a fact gets (`max_samples`); None for a fixed number of samples."""
        samples = self.overrides.get("samples")
        if samples is None and factset is not None:
            samples = factset.settings.get("samples")
        if samples is None:
            samples = self.defaults.get("samples")
        return self.max_samples if samples == AUTO_SAMPLES else None

    def tracer(self, settings: TraceSettings, spec: str | None = None) -> Tracer:
        from fact_locator.tracing.tracer import Tracer

        spec = spec or self.model_spec
        key = (spec, settings)
        with self._lock:
            if key not in self._tracers:
                self._tracers[key] = Tracer(self.load(spec), settings)
            return self._tracers[key]

    def noise_for(self, factset: FactSet | None, settings: TraceSettings | None = None) -> NoiseInfo | None:
        """The noise the fact set's facts (or a lone fact) are traced with (`noise_choice.py`):
        the given std, the model's, the fact set's, or None: each fact calibrated on its own subject."""
        from fact_locator.noise_choice import choose_noise

        return choose_noise(self, factset, settings or self.settings_for(factset))

    def model_noise(self, spec: str | None = None, noise_scale: float = 3.0) -> NoiseInfo:
        """The model's noise, measured once per model and kept on disk (`noise_choice.model_noise`)."""
        from fact_locator.noise_choice import model_noise

        return model_noise(self, spec, noise_scale)

    # -- the clean run -----------------------------------------------------------------------
    def known_rule_for(self, factset: FactSet | None = None) -> str:
        """`known_rule`: the overrides' (the plugin's --fl-known-rule or ini), else the fact
        set's `known_rule:`, else the defaults', else greedy_target (ROME's)."""
        rule = self.overrides.get("known_rule")
        if rule is None:
            rule = factset.known_rule if factset is not None else self.defaults.get("known_rule", "greedy_target")
        if rule not in KNOWN_RULES:
            raise UsageError(f"unknown known_rule {rule!r}: choose one of {', '.join(KNOWN_RULES)}")
        return str(rule)

    def clean(self, fact: Fact, factset: FactSet | None = None, min_p_clean: float | None = None) -> CleanCheck:
        """One forward of the prompt: the top-1 token and the target's probability; under
        `known_rule` greedy_target, the greedy continuation of as many tokens as the target
        has too (one more forward per further target token)."""
        from fact_locator.tracing.clean_run import clean_run
        from fact_locator.tracing.greedy import greedy_continuation

        spec = self.model_for(factset)
        floor = float(min_p_clean if min_p_clean is not None else (factset.min_p_clean if factset is not None else 0.0))
        rule = self.known_rule_for(factset)
        key = (spec, fact.subject, fact.relation, fact.target, rule)
        with self._lock:
            cached = self._clean.get(key)
        if cached is None:
            tracer = self.tracer(self.settings_for(factset), spec)
            run = clean_run(tracer.engine, tracer.prepare(fact))
            target_ids = run.prepared.target_ids
            greedy: tuple[int, ...] = ()
            if rule == "greedy_target":
                greedy = greedy_continuation(tracer.engine, run.prepared.token_ids, run.top_id, len(target_ids))
            decode = tracer.loaded.tokenizer.decode
            cached = CleanCheck(
                top_token=decode([run.top_id]),
                p_top=run.p_top,
                target_token=run.prepared.target_token,
                p_target=run.prob,
                greedy_ids=greedy,
                target_ids=target_ids if rule == "greedy_target" else (),
                greedy_text=decode(list(greedy)),
                target_text=decode(list(target_ids)),
                rule=rule,
            )
            with self._lock:
                self._clean[key] = cached
                self.stats["clean_runs"] += 1
        return replace(cached, min_p_clean=floor)

    # -- traces ------------------------------------------------------------------------------
    @property
    def cache(self) -> TraceCache:
        from fact_locator.cache import TraceCache

        if self._cache is None:
            self._cache = TraceCache(self.cache_dir, enabled=self.use_cache)
        return self._cache

    def cache_key(self, fact: Fact, settings: TraceSettings, noise: NoiseInfo | None, spec: str | None = None,
                  adaptive: bool = False) -> str | None:
        """The cache key, or None when the noise is calibrated per fact (known only after the
        clean run). `adaptive`: the one key of the fact's trace under `samples: auto`, whatever
        its number of draws."""
        from fact_locator.trace_key import trace_key

        return None if noise is None else trace_key(self.load(spec), fact, settings, noise, self.method, adaptive)

    def trace(
        self, fact: Fact, factset: FactSet | None = None, settings: TraceSettings | None = None,
        companions: Iterable[Fact] = (),
    ) -> Trace:
        """The fact's trace, from the cache when it has it; written there as soon as it is
        computed. `companions`: other facts of the set that this session will trace (read
        lazily); those whose restoration runs can share forwards with this fact's (same
        prompt shape, while a batch has room: on a GPU) are traced with it, and later calls
        for them find their traces ready."""
        spec = self.model_for(factset)
        settings = settings or self.settings_for(factset)
        wanted = self._lookup(fact, factset, settings, spec)
        if wanted.trace is not None:
            return self._found(wanted)
        batch = [wanted]
        if factset is not None and self.method == "exact":
            pending: dict[int, _Lookup] = {}
            seen = {wanted.memo_key}

            def untraced() -> Iterator[Fact]:
                # Lazy: batch_mates reads companions only while a batch has room for them.
                for companion in companions:
                    lookup = self._lookup(companion, factset, settings, spec)
                    # One forward batch shares one noise: a fact calibrated on its own joins only its equals.
                    if lookup.trace is None and lookup.memo_key not in seen and lookup.noise == wanted.noise:
                        seen.add(lookup.memo_key)
                        pending[id(lookup.fact)] = lookup
                        yield lookup.fact

            batch += [pending[id(m)] for m in self.tracer(settings, spec).batch_mates(wanted.fact, untraced())]
        self._compute(batch, settings, spec, factset)
        return self._found(wanted)

    def extend(self, pairs: Sequence[tuple[Fact, Trace]], samples: int, factset: FactSet | None = None) -> list[Trace]:
        """The traces of `pairs` (facts as asked, their traces from `trace`) extended to
        `samples` draws in shared forwards (`Tracer.extend_many`): only the new draws run. Each
        is written over its cache entry (under `samples: auto` the key has no sample count) and
        remembered, so a later `trace` of the fact returns it."""
        spec = self.model_for(factset)
        settings = self.settings_for(factset)
        lookups = [self._lookup(fact, factset, settings, spec) for fact, _trace in pairs]
        for lookup, (_fact, trace) in zip(lookups, pairs):
            lookup.trace = trace
        tracer = self.tracer(settings, spec)
        extended = tracer.extend_many([(lookup.fact, lookup.trace) for lookup in lookups], samples,  # type: ignore[misc]
                                      progress=self._progress(lookups, factset))
        for lookup, trace in zip(lookups, extended):
            if trace is not lookup.trace:
                if lookup.key is not None:
                    self.cache.put(lookup.key, trace)  # at once: a resumed run starts from here
                with self._lock:
                    self._traces[lookup.memo_key] = trace
                    self.stats["extended"] = self.stats.get("extended", 0) + 1
        return extended

    def _lookup(self, fact: Fact, factset: FactSet | None, settings: TraceSettings, spec: str) -> _Lookup:
        """The fact as traced, its noise and keys, and its trace if this session or the cache has it."""
        fact = self.fact_for(fact, factset, settings)
        noise = self.noise_for(factset, settings)
        if noise is None:  # a lone fact: calibrate on its own subject, as the tracer does
            tracer = self.tracer(settings, spec)
            prepared = tracer.prepare(fact)
            noise = tracer.noise_for(prepared, tracer.embed(prepared))
        key = self.cache_key(fact, settings, noise, spec, adaptive=self.adaptive_max(factset) is not None)
        memo_key = key or (spec, fact, settings, noise)
        with self._lock:
            trace = self._traces.get(memo_key)
        if trace is not None:  # traced or read earlier in this session
            return _Lookup(fact, noise, key, memo_key, trace, fresh=False)
        trace = self.cache.get(key) if key is not None else None
        if trace is not None and trace.fact_id != fact.id:
            # The key ignores ids (they do not change the numbers): label the trace as asked.
            trace = replace(trace, fact_id=fact.id)
        return _Lookup(fact, noise, key, memo_key, trace, fresh=trace is not None)

    def _found(self, lookup: _Lookup) -> Trace:
        """Remember a trace read from the cache (once, telling `on_trace`); return it."""
        assert lookup.trace is not None
        if lookup.fresh:
            self._remember(lookup, lookup.trace, cached=True)
        return lookup.trace

    def _compute(self, batch: Sequence[_Lookup], settings: TraceSettings, spec: str,
                 factset: FactSet | None = None) -> None:
        """Trace the facts of `batch` (one noise: a fact set's, or a lone fact) together,
        writing each to the cache as soon as it is done."""
        tracer = self.tracer(settings, spec)
        if self.method == "atp":
            from fact_locator.tracing.attribution import attribution_patch

            for lookup in batch:
                self._store(lookup, attribution_patch(tracer, lookup.fact, lookup.noise))
            return
        try:
            tracer.trace_many([lookup.fact for lookup in batch], noise=batch[0].noise,
                              progress=self._progress(batch, factset),
                              on_traced=lambda i, trace: self._store(batch[i], trace))
        except FactLocatorError:
            if len(batch) == 1 or batch[0].trace is not None:
                raise
            # A companion's problem must not fail this fact: trace it alone (each companion's
            # own call traces it again and reports its own error).
            self._compute(batch[:1], settings, spec, factset)

    def _progress(self, batch: Sequence[_Lookup], factset: FactSet | None) -> Progress | None:
        """The tracer's (done, total) callback, told to `on_progress` as `TraceProgress`."""
        listener = self.on_progress
        if listener is None:
            return None
        from fact_locator.trace_progress import TraceProgress

        first = batch[0].fact
        fact, name = first.id or first.subject, factset.name if factset is not None else None
        return lambda done, total: listener(TraceProgress(fact, name, done, total, together=len(batch)))

    def _store(self, lookup: _Lookup, trace: Trace) -> None:
        lookup.trace = trace
        if lookup.key is not None:
            self.cache.put(lookup.key, trace)  # at once: an interrupted run keeps what it traced
        self._remember(lookup, trace, cached=False)

    def _remember(self, lookup: _Lookup, trace: Trace, cached: bool) -> None:
        with self._lock:
            self._traces[lookup.memo_key] = trace
            self.stats["cached" if cached else "traced"] += 1
        lookup.fresh = False
        if self.on_trace is not None:
            self.on_trace(lookup.fact, trace, cached)

    def fact_for(self, fact: Fact, factset: FactSet | None, settings: TraceSettings) -> Fact:
        """The fact as traced: under symmetric token replacement without its own
        `replacements:`, the other subjects of its fact set (in file order) are its candidates."""
        if settings.corruption != "str" or fact.replacements or factset is None:
            return fact
        others = tuple(dict.fromkeys(s.fact.subject for s in factset.facts if s.fact.subject != fact.subject))
        return replace(fact, replacements=others)

    def severed(self, fact: Fact, factset: FactSet | None = None) -> SeveredPaths:
        """Severed paths at the last subject token: the IE curves, the fraction of the
        hidden-state effect there that goes through the later MLPs / attention, and its peak."""
        from fact_locator.tracing.severed import severed_trace

        spec = self.model_for(factset)
        settings = self.settings_for(factset)
        noise = self.noise_for(factset, settings)
        tracer = self.tracer(settings, spec)
        return severed_trace(tracer, self.fact_for(fact, factset, settings), noise=noise, tokens="last_subject").at_last_subject()
