"""The causal tracer's public face: `Tracer` traces facts on one loaded model with one set of
settings. The jobs it runs live beside it: the clean run (`clean_run`), the corruption
(`corruption`), the corrupted run (`corrupted_run`), which sites run in which forwards
(`planning`, `batching`), the restoration forwards (`restoration`, `kv_suffix`, `stand_ins`,
`kernels`) and the NaN checks (`nonfinite`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fact_locator.errors import FactLocatorError, UsageError
from fact_locator.facts import Fact
from fact_locator.models.loading import LoadedModel
from fact_locator.tracing.batching import facts_together, run_in_batches, sites_per_batch
from fact_locator.tracing.clean_run import CleanRun, clean_run
from fact_locator.tracing.corrupted_run import FactRun, corrupted_run
from fact_locator.tracing.corruption import NOISE_MODES, CorruptionRequest, calibrate_model_noise, corrupt, noise_for
from fact_locator.tracing.engine import Engine, EngineOptions
from fact_locator.tracing.extension import check_extendable, extended_trace, measured_fields
from fact_locator.tracing.kv_suffix import suffix_probe
from fact_locator.tracing.metrics import check_metric
from fact_locator.tracing.nonfinite import FiniteCheck, raise_unless_finite
from fact_locator.tracing.planning import Site, SitePlan, prompt_shape, restored_layers
from fact_locator.tracing.prompt import PreparedPrompt, prepare_prompt, prompt_part, teacher_forced
from fact_locator.tracing.readout import Readout
from fact_locator.tracing.restoration import Restorations
from fact_locator.tracing.sample_effects import SampleEffects
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import NoiseInfo, Trace
from fact_locator.versions import library_versions

if TYPE_CHECKING:
    import torch

__all__ = ["EngineOptions", "Progress", "Site", "Tracer", "prompt_fields", "restored_layers"]

# Called with (sites done, sites in all) as the restoration runs progress.
Progress = Callable[[int, int], None]


class Tracer:
    """Traces facts on one loaded model with one set of settings.

    Restoration runs are grouped by restored token (all kinds, and all facts of one prompt
    shape traced together) and, where the model supports it (decided once by
    `kv_suffix.suffix_probe`), run only the positions from that token on, on top of the
    corrupted runs' KV caches, starting at the earliest restored layer of the batch; the
    layers before it replay the corrupted run's output, and each layer above it runs only
    the sites whose first restored layer it has reached (windows clipped at layer 0 start at
    their end, from the longest one's state: `SitePlan.forks`). Otherwise every run is a
    forward of the whole prompt. Either way the numbers equal the plain loop's
    (`tracing/reference.py`). `options` switch those savings off one by one (`EngineOptions`).
    """

    def __init__(self, loaded: LoadedModel, settings: TraceSettings | None = None, options: EngineOptions | None = None):
        self.loaded = loaded
        self.settings = settings or TraceSettings()
        # The model as every run calls it: the forward, its kernel swaps, settings and options.
        self.engine = Engine(loaded, self.settings, options)
        # Restoration forwards write their logits and softmax into buffers kept for a trace.
        self._readout = Readout()
        self._restorations = Restorations(self.engine, self._readout)
        self._suffix: bool | None = None  # decided by the probe on the first trace
        self.suffix_fallback_reason: str | None = None
        self._model_noise: NoiseInfo | None = None

    # -- public ------------------------------------------------------------------------
    def prepare(self, fact: Fact) -> PreparedPrompt:
        return prepare_prompt(self.loaded.tokenizer, fact, self.loaded.max_length)

    def prepare_traced(self, fact: Fact) -> PreparedPrompt:
        """The prompt a trace runs: `prepare`'s, with the target's tokens but the last appended
        under `target_metric: full` (`prompt.teacher_forced`)."""
        prepared = self.prepare(fact)
        if self.settings.target_metric == "full":
            return teacher_forced(prepared, self.loaded.tokenizer)
        return prepared

    def embed(self, prepared: PreparedPrompt) -> torch.Tensor:
        """Output of the embedding module for the prompt, (tokens, d)."""
        return clean_run(self.engine, prepared).embeddings

    @property
    def options(self) -> EngineOptions:
        """How this tracer computes (never what); may be replaced between traces."""
        return self.engine.options

    @options.setter
    def options(self, options: EngineOptions) -> None:
        self.engine.options = options

    @property
    def uses_kv_suffix(self) -> bool | None:
        """Whether restoration runs use the KV-suffix path (None until the first trace)."""
        return self._suffix

    def trace(self, fact: Fact, noise: NoiseInfo | None = None, progress: Progress | None = None) -> Trace:
        """Trace one fact. `noise` overrides the per-fact calibration (fact sets share one)."""
        return self.trace_many([fact], noise, progress)[0]

    def trace_many(
        self, facts: Sequence[Fact], noise: NoiseInfo | None = None, progress: Progress | None = None,
        on_traced: Callable[[int, Trace], None] | None = None,
    ) -> list[Trace]:
        """Trace several facts together: facts whose prompts have the same shape (token count
        and subject span) share restoration forwards, as many as fit in memory at a time
        (`batching.facts_together`). The numbers equal tracing each on its own; `progress`
        counts the sites of all of them (0 done first, then once per batch); `on_traced(index,
        trace)` hears of each trace as it is done."""
        prepared = [self.prepare_traced(fact) for fact in facts]

        def finish(i: int, part: _Drawn) -> Trace:
            assert part.effects is not None  # a fresh trace draws from 0: at least one draw
            return self._new_trace(prepared[i], part)

        return self._run_facts(prepared, [noise] * len(prepared), [0] * len(prepared), self.settings.samples, finish,
                               progress, on_traced)

    def extend(self, trace: Trace, fact: Fact, samples: int, progress: Progress | None = None) -> Trace:
        """`trace` (of `fact`, by this tracer's settings but `samples`) extended to `samples`
        noise draws: only draws n..samples-1 run, and the result equals a fresh trace of
        `samples` draws with the same seed (`tracing/extension.py`)."""
        return self.extend_many([(fact, trace)], samples, progress)[0]

    def extend_many(
        self, items: Sequence[tuple[Fact, Trace]], samples: int, progress: Progress | None = None,
        on_traced: Callable[[int, Trace], None] | None = None,
    ) -> list[Trace]:
        """`extend` for several (fact, trace) pairs, their new draws in shared forwards as
        `trace_many` batches them. Each trace keeps its own noise std; traces that already
        hold `samples` draws come back as they are (`on_traced` hears of the others). Raises UsageError for a trace this tracer
        cannot extend (no draws kept, other settings, model or fact)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise UsageError(f"samples must be an integer >= 1, got {samples!r}")
        prepared = [self.prepare_traced(fact) for fact, _trace in items]
        for p, (_fact, trace) in zip(prepared, items):
            check_extendable(trace, self.loaded, self.settings, p, samples)
        todo = [i for i, (_fact, trace) in enumerate(items) if (trace.n_samples or 0) < samples]
        traces = {i: trace for i, (_fact, trace) in enumerate(items)}

        def finish(j: int, part: _Drawn) -> Trace:
            return extended_trace(items[todo[j]][1], part.effects, samples, part.timings)

        def traced(j: int, trace: Trace) -> None:
            traces[todo[j]] = trace
            if on_traced is not None:
                on_traced(todo[j], trace)

        self._run_facts([prepared[i] for i in todo], [items[i][1].noise for i in todo], [items[i][1].n_samples or 0 for i in todo],
                        samples, finish, progress, traced)
        return [traces[i] for i in range(len(items))]

    def _run_facts(
        self, prepared: Sequence[PreparedPrompt], noises: Sequence[NoiseInfo | None], firsts: Sequence[int], samples: int,
        finish: Callable[[int, _Drawn], Trace], progress: Progress | None, on_traced: Callable[[int, Trace], None] | None,
    ) -> list[Trace]:
        """Draws firsts[i]..samples-1 of each fact, facts of one prompt shape and first draw
        in shared forwards; `finish(i, drawn)` makes fact i's trace of them."""
        plan = self._plan()
        total = sum(plan.site_count(p) for p in prepared)
        done = 0

        def count(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        count(0)  # the total, before the first batch: a listener can say what is starting
        traces: dict[int, Trace] = {}
        by_shape: dict[tuple[tuple[int, tuple[int, int]], int], list[int]] = {}
        for i, p in enumerate(prepared):
            by_shape.setdefault((prompt_shape(p), firsts[i]), []).append(i)
        try:
            for (_shape, first), indices in by_shape.items():
                # Batches are sized by the rows a site runs: only the new draws when extending.
                sizing = self.settings if first == 0 else replace(self.settings, samples=max(1, samples - first))
                step = facts_together(self.loaded, sizing, len(prepared[indices[0]].token_ids))
                for lo in range(0, len(indices), step):
                    chunk = indices[lo : lo + step]
                    drawn = self._trace_together([prepared[i] for i in chunk], [noises[i] for i in chunk], first, samples, sizing, count)
                    for i, part in zip(chunk, drawn):
                        traces[i] = finish(i, part)
                        if on_traced is not None:
                            on_traced(i, traces[i])
        finally:
            self._readout.clear()
        return [traces[i] for i in range(len(prepared))]

    def batch_mates(self, fact: Fact, others: Iterable[Fact]) -> list[Fact]:
        """The facts of `others` (read lazily, in order) that `trace_many` would put into the
        same restoration forwards as `fact`: same prompt shape, as many as fit beside it.
        Empty where one fact fills a batch (a CPU and SmolLM2, say): nothing is read then."""
        prepared = self.prepare_traced(fact)
        room = facts_together(self.loaded, self.settings, len(prepared.token_ids)) - 1
        mates: list[Fact] = []
        if room <= 0:
            return mates
        for other in others:
            try:
                candidate = self.prepare_traced(other)
            except FactLocatorError:
                continue  # its own trace reports the problem
            if prompt_shape(candidate) == prompt_shape(prepared):
                mates.append(other)
                if len(mates) == room:
                    break
        return mates

    def noise_for(self, prepared: PreparedPrompt, embeddings: torch.Tensor) -> NoiseInfo:
        """The settings' noise std, or one calibrated on this fact's subject embeddings."""
        return noise_for(self.settings, prepared, embeddings)

    def model_noise(self) -> NoiseInfo:
        """The model's noise (`noise_calibration: model`): `noise_scale` x the std of the
        reference subjects' embeddings, computed once per tracer. The `Locator` keeps it on
        disk too and passes it in; a trace of this tracer without a noise uses it."""
        if self._model_noise is None:
            from fact_locator.tracing.reference_subjects import reference_subjects

            self._model_noise = calibrate_model_noise(self.loaded, reference_subjects(), self.settings.noise_scale)
        return self._model_noise

    def noise_or_model(self, noise: NoiseInfo | None) -> NoiseInfo | None:
        """`noise` if given; else the model's noise where the settings calibrate per model,
        so the trace, severed paths and attribution patching of a fact share one noise."""
        s = self.settings
        if noise is None and s.noise is None and s.noise_calibration == "model" and s.corruption in NOISE_MODES:
            return self.model_noise()
        return noise

    def restoration_batches(self, fact: Fact, noise: NoiseInfo | None = None) -> list[Callable[[], torch.Tensor]]:
        """The restoration forwards a trace of `fact` runs, one call per batch, each returning
        its values (sites, samples), all on one clean and corrupted run made here. For
        benchmarks, which time them batch by batch with `options` switched between calls."""
        import torch

        with torch.inference_mode():
            prepared = self.prepare_traced(fact)
            check_metric(self.settings.metric, prepared)
            self._choose_path(prepared)
            clean = clean_run(self.engine, prepared, self.settings.kinds, measure=True)
            draws, _noise = self._corruption(prepared, clean, noise)
            run = FactRun(prepared, clean.states, draws, corrupted_run(self.engine, prepared, draws, keep=bool(self._suffix)))
        batches: list[Callable[[], torch.Tensor]] = []
        for shape, offset, sites in self._plan().site_groups([run.shape]):
            size = sites_per_batch(self.loaded, self.settings, shape[0], shape[0] - offset)
            for lo in range(0, len(sites), size):

                def batch(offset: int = offset, chunk: Sequence[Site] = sites[lo : lo + size]) -> torch.Tensor:
                    with torch.inference_mode():
                        return self._restorations.restore([run], offset, chunk, self._plan())

                batches.append(batch)
        return batches

    # -- the parts of a trace ------------------------------------------------------------
    def _plan(self) -> SitePlan:
        return SitePlan(self.loaded.n_layers, self.settings.kinds, self.settings.window, suffix=bool(self._suffix),
                        forks_on=self.options.forks)

    def _choose_path(self, prepared: PreparedPrompt) -> None:
        """KV suffix or whole prompts, decided once, on the first trace."""
        if self._suffix is None and not self.options.kv_suffix:
            self._suffix = False
            self.suffix_fallback_reason = "the KV-suffix path is switched off (EngineOptions.kv_suffix)"
        elif self._suffix is None:
            # The probe checks the path on the prompt alone (its first-token read-out).
            reason = suffix_probe(self.engine, self._restorations, prompt_part(prepared), self._plan())
            self._suffix = reason is None
            if reason is not None:
                self.suffix_fallback_reason = reason

    def _corruption(self, prepared: PreparedPrompt, clean: CleanRun, noise: NoiseInfo | None,
                    samples: int | None = None) -> tuple[torch.Tensor, NoiseInfo]:
        """The additive corruption of the subject's embeddings, one row per sample (the
        settings' samples, or `samples`), on the model's device and dtype
        (`corruption.CORRUPTION_MODES`)."""
        settings = self.settings if samples is None else replace(self.settings, samples=samples)
        noise = self.noise_or_model(noise)
        # The corruption is the prompt's: a teacher-forced target's tokens take no part in it.
        prompt = prompt_part(prepared)
        embeddings = clean.embeddings[: prompt.prompt_length]
        draws, noise = corrupt(CorruptionRequest(settings, prompt, embeddings, noise, self.prepare, self.embed))
        return draws.to(device=self.loaded.device, dtype=self.engine.dtype), noise

    def _trace_together(self, prepared: Sequence[PreparedPrompt], noises: Sequence[NoiseInfo | None], first: int, samples: int,
                        sizing: TraceSettings, count: Callable[[int], None]) -> list[_Drawn]:
        """Draws first..samples-1 of facts whose restoration runs share forwards: all kinds
        and facts of one restored token go into the same batches, `sizing`'s rows per site."""
        import numpy as np
        import torch

        started = time.perf_counter()
        settings = self.settings
        for p in prepared:
            check_metric(settings.metric, p)
        runs: list[FactRun] = []
        ran: list[int] = []  # the fact of each run: one without new draws has none
        cleans: list[CleanRun] = []
        fact_noises: list[NoiseInfo] = []
        timings: list[dict[str, float]] = []
        with torch.inference_mode():
            self._choose_path(prepared[0])
            plan = self._plan()
            for i, (p, noise) in enumerate(zip(prepared, noises)):
                t0 = time.perf_counter()
                clean = clean_run(self.engine, p, settings.kinds, measure=True)
                t1 = time.perf_counter()
                draws, fact_noise = self._corruption(p, clean, noise, samples)
                draws = draws[first:]
                if draws.shape[0]:
                    runs.append(FactRun(p, clean.states, draws, corrupted_run(self.engine, p, draws, keep=plan.suffix)))
                    ran.append(i)
                else:
                    count(plan.site_count(p))  # symmetric token replacement ran out of subjects
                timings.append({"clean": t1 - t0, "corrupt": time.perf_counter() - t1})
                cleans.append(clean)
                fact_noises.append(fact_noise)

            # Per run, every site's value in every draw. Sites before the subject see no
            # noise and never run: they keep the corrupted run's values (IE exactly 0).
            restored = [{kind: np.broadcast_to(r.corrupted.values.cpu().numpy(), (self.loaded.n_layers, r.prepared.prompt_length,
                                                                                 r.draws.shape[0])).copy()
                         for kind in settings.kinds} for r in runs]
            t0 = time.perf_counter()
            # The effects stay on the device until every batch is queued: reading them back
            # after each batch would leave a GPU idle while the host sets up the next one.
            batches: list[tuple[Sequence[Site], torch.Tensor]] = []
            finite: list[FiniteCheck] = []
            for shape, offset, sites in plan.site_groups([r.shape for r in runs]):
                n_tokens = shape[0]

                def run(chunk: Sequence[Site], offset: int = offset) -> Sequence[Site]:
                    batches.append((chunk, self._restorations.restore(runs, offset, chunk, plan, finite)))
                    count(len(chunk))
                    return chunk

                size = sites_per_batch(self.loaded, sizing, n_tokens, n_tokens - offset)
                run_in_batches(sites, size, run, on_oom=self._restorations.free_memory)
            raise_unless_finite(self.engine, finite)
            for chunk, values in batches:
                for site, row in zip(chunk, values.float().cpu().numpy()):
                    restored[site.fact][site.kind][site.layer, site.token] = row
            restore = (time.perf_counter() - t0) / max(1, len(runs))
            effects: list[SampleEffects | None] = [None] * len(prepared)
            for run_index, (i, r) in enumerate(zip(ran, runs)):
                effects[i] = SampleEffects.from_arrays(r.corrupted.probs.cpu().numpy(), r.corrupted.values.cpu().numpy(),
                                                       restored[run_index])
        total = time.perf_counter() - started
        # The restoration forwards are shared: each fact is given an equal part of their time.
        shared = {"restore": restore, "total": total / len(prepared), "facts_together": float(len(prepared))}
        return [_Drawn(clean, noise, fact_effects, fact_timings | shared)
                for clean, noise, fact_effects, fact_timings in zip(cleans, fact_noises, effects, timings)]

    def _new_trace(self, prepared: PreparedPrompt, drawn: _Drawn) -> Trace:
        assert drawn.effects is not None
        return Trace(
            **prompt_fields(self.loaded, prepared),
            top_token=self.loaded.tokenizer.decode([drawn.clean.top_id]),
            p_clean=drawn.clean.prob,
            **measured_fields(drawn.effects),
            settings=self.settings.to_dict() | {"device": self.loaded.device},
            noise=drawn.noise,
            timings=drawn.timings,
            versions=library_versions(),
            metric=self.settings.metric,
            clean_value=drawn.clean.value,
            target_metric=self.settings.target_metric,
        )


@dataclass
class _Drawn:
    """What `_trace_together` measured of one fact: its clean run, noise, the new draws'
    values (None: none were left to draw) and the time spent."""

    clean: CleanRun
    noise: NoiseInfo
    effects: SampleEffects | None
    timings: dict[str, float]


def prompt_fields(loaded: LoadedModel, prepared: PreparedPrompt) -> dict[str, Any]:
    """The Trace fields that say what was traced (model, fact, tokens), not what was measured:
    the prompt's tokens (a teacher-forced target's are not positions of the trace)."""
    prepared = prompt_part(prepared)
    fact = prepared.fact
    return {
        "model": loaded.identity,
        "fact_id": fact.id,
        "subject": fact.subject,
        "relation": fact.relation,
        "prompt": fact.prompt,
        "tokens": prepared.tokens,
        "token_ids": prepared.token_ids,
        "subject_range": prepared.subject_range,
        "target": fact.target,
        "target_token": prepared.target_token,
        "target_id": prepared.target_id,
    }
