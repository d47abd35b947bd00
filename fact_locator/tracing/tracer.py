"""The causal tracer: clean run, corrupted run, and corrupted-with-restoration runs,
batched over sites and noise samples."""

from __future__ import annotations

import inspect
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from fact_locator.errors import FactError, FactLocatorError, TraceError
from fact_locator.facts import Fact
from fact_locator.models.loading import LoadedModel, torch_dtype
from fact_locator.tracing.corruption import calibrate_noise, make_noise
from fact_locator.tracing.batch_rows import BatchRows, device_tensor
from fact_locator.tracing.batching import auto_batch_rows, cpu_rows_cap, model_width, run_in_batches
from fact_locator.tracing.kernels import attention_backends, fused_tanh_gelu, tanh_gelu_sites
from fact_locator.tracing.kv_suffix import cache_tensors, suffix_cache
from fact_locator.tracing.module_swaps import replaced_layers, replaced_submodules
from fact_locator.tracing.stand_ins import partial_module, replay_layer, staggered_layer
from fact_locator.tracing.hooks import edit_outputs, main_tensor
from fact_locator.tracing.metrics import check_metric, metric_values
from fact_locator.tracing.prompt import PreparedPrompt, prepare_prompt
from fact_locator.tracing.readout import Readout, finite_rows
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import NoiseInfo, Trace

if TYPE_CHECKING:
    import torch

__all__ = ["Progress", "Site", "Tracer", "prompt_fields", "restored_layers"]

# Called with (sites done, sites in all) as the restoration runs progress.
Progress = Callable[[int, int], None]


def restored_layers(kind: str, layer: int, n_layers: int, window: int) -> range:
    """Layers restored for the site (kind, layer): one for `hidden`, a window for mlp/attn
    (ROME's code: layer - w//2 .. layer + w - w//2 - 1, clipped)."""
    if kind == "hidden":
        return range(layer, layer + 1)
    return range(max(0, layer - window // 2), min(n_layers, layer + window - window // 2))


@dataclass
class _CleanRun:
    prob: float
    value: float  # the metric's value
    top_id: int
    states: dict[tuple[str, int], torch.Tensor]  # (kind, layer) -> (tokens, d)
    embeddings: torch.Tensor  # (tokens, d), output of the embedding module


@dataclass
class _CorruptedRun:
    prob: float  # P*(o), averaged over the samples
    value: float  # the metric, averaged over the samples
    # Kept only for the KV-suffix path: per decoder layer, its main output (samples, tokens, d),
    # the rest of its output tuple (None when it returns a bare tensor), and its keys/values.
    outputs: list[torch.Tensor]
    output_rest: list[tuple[Any, ...] | None]
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    mlp_outputs: list[torch.Tensor]  # per layer, the MLP site's output (samples, tokens, d)


@dataclass(frozen=True)
class _FiniteCheck:
    """A restoration run's NaN/inf check, left on the device until the trace reads it."""

    flag: torch.Tensor  # a 0-d bool: every logit finite
    where: str
    prepared: PreparedPrompt


class Site(NamedTuple):
    """One restoration: `kind` at `layer` and `token` of the fact `fact` (an index into the
    facts traced together)."""

    fact: int
    kind: str
    layer: int
    token: int


@dataclass
class _FactRun:
    """What one fact's restoration runs start from: its prompt, the clean states they
    restore, its corruption draws (samples, subject tokens, d) and its corrupted run."""

    prepared: PreparedPrompt
    states: dict[tuple[str, int], torch.Tensor]
    draws: torch.Tensor
    corrupted: _CorruptedRun

    @property
    def shape(self) -> tuple[int, tuple[int, int], int]:
        """Facts batch together when their restoration runs have the same shape: token
        count, subject span and rows per site."""
        return (*_prompt_shape(self.prepared), self.draws.shape[0])


class Tracer:
    """Traces facts on one loaded model with one set of settings.

    Restoration runs are grouped by restored token (all kinds, and all facts of one prompt
    shape traced together) and, where the model supports it (decided once by
    `_suffix_probe`), run only the positions from that token on, on top of the corrupted
    runs' KV caches, starting at the earliest restored layer of the batch; the layers before
    it replay the corrupted run's output, and each layer above it runs only the sites whose
    first restored layer it has reached (windows clipped at layer 0 start at their end, from
    the longest one's state: `_forks`). Otherwise every run is a forward of the whole
    prompt. Either way the numbers equal the plain loop's (`tracing/reference.py`).
    """

    def __init__(self, loaded: LoadedModel, settings: TraceSettings | None = None):
        self.loaded = loaded
        self.settings = settings or TraceSettings()
        self._dtype = torch_dtype(self.settings.dtype)
        forward = inspect.signature(loaded.model.forward).parameters
        self._logits_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        # transformers renames past_key_values to `cache` model by model (GPT-J already).
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        # GELU's tanh form runs as one kernel instead of "gelu_new"'s eight (`fused_tanh_gelu`).
        self._gelu_sites = tanh_gelu_sites(loaded.model)
        self._suffix: bool | None = None  # decided by the probe on the first trace
        # Restoration forwards write their logits and softmax into buffers kept for a trace.
        self._readout = Readout()
        head = loaded.model.get_output_embeddings() if hasattr(loaded.model, "get_output_embeddings") else None
        self._head_path = next((name for name, module in loaded.model.named_modules() if module is head), None) if head is not None else None
        self.suffix_fallback_reason: str | None = None

    # -- public ------------------------------------------------------------------------
    def prepare(self, fact: Fact) -> PreparedPrompt:
        return prepare_prompt(self.loaded.tokenizer, fact, self.loaded.max_length)

    def embed(self, prepared: PreparedPrompt) -> torch.Tensor:
        """Output of the embedding module for the prompt, (tokens, d)."""
        return self._clean_run(prepared, kinds=(), measure=False).embeddings

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
        (`_facts_together`). The numbers equal tracing each on its own; `progress` counts the
        sites of all of them; `on_traced(index, trace)` hears of each trace as it is done."""
        prepared = [self.prepare(fact) for fact in facts]
        total = sum(self._site_count(p) for p in prepared)
        done = 0

        def count(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        traces: dict[int, Trace] = {}
        by_shape: dict[tuple[int, tuple[int, int]], list[int]] = {}
        for i, p in enumerate(prepared):
            by_shape.setdefault(_prompt_shape(p), []).append(i)
        try:
            for indices in by_shape.values():
                step = self._facts_together(len(prepared[indices[0]].token_ids))
                for lo in range(0, len(indices), step):
                    chunk = indices[lo : lo + step]
                    for i, trace in zip(chunk, self._trace_together([prepared[i] for i in chunk], noise, count)):
                        traces[i] = trace
                        if on_traced is not None:
                            on_traced(i, trace)
        finally:
            self._readout.clear()
        return [traces[i] for i in range(len(prepared))]

    def batch_mates(self, fact: Fact, others: Iterable[Fact]) -> list[Fact]:
        """The facts of `others` (read lazily, in order) that `trace_many` would put into the
        same restoration forwards as `fact`: same prompt shape, as many as fit beside it.
        Empty where one fact fills a batch (a CPU and SmolLM2, say): nothing is read then."""
        prepared = self.prepare(fact)
        room = self._facts_together(len(prepared.token_ids)) - 1
        mates: list[Fact] = []
        if room <= 0:
            return mates
        for other in others:
            try:
                candidate = self.prepare(other)
            except FactLocatorError:
                continue  # its own trace reports the problem
            if _prompt_shape(candidate) == _prompt_shape(prepared):
                mates.append(other)
                if len(mates) == room:
                    break
        return mates

    def _corruption(self, prepared: PreparedPrompt, clean: _CleanRun, noise: NoiseInfo | None) -> tuple[torch.Tensor, NoiseInfo]:
        """The additive corruption of the subject's embeddings, one row per sample: noise
        draws, or for symmetric token replacement the difference between a replacement
        subject's embeddings and the subject's (one row per usable replacement)."""
        settings = self.settings
        start, end = prepared.subject_range
        if settings.corruption == "str":
            draws, noise = self._replacement_deltas(prepared, clean.embeddings)
        else:
            if noise is None:
                noise = self.noise_for(prepared, clean.embeddings)
            draws = make_noise(settings.samples, end - start, clean.embeddings.shape[-1], noise.std, settings.seed, settings.corruption)
        return draws.to(device=self.loaded.device, dtype=self._dtype), noise

    def _replacement_deltas(self, prepared: PreparedPrompt, embeddings: torch.Tensor) -> tuple[torch.Tensor, NoiseInfo]:
        """Replacements whose prompt tokenizes to the same length, with the same tokens
        outside the subject span, up to `samples` of them, in the order given."""
        import torch

        fact = prepared.fact
        start, end = prepared.subject_range
        deltas, used = [], []
        for subject in fact.replacements:
            if len(deltas) == self.settings.samples:
                break
            if subject == fact.subject or not subject.strip():
                continue
            other = prepare_prompt(self.loaded.tokenizer, replace(fact, subject=subject, replacements=()), self.loaded.max_length)
            same_frame = (
                other.subject_range == (start, end)
                and other.token_ids[:start] == prepared.token_ids[:start]
                and other.token_ids[end:] == prepared.token_ids[end:]
            )
            if same_frame:
                deltas.append(self._clean_run(other, kinds=(), measure=False).embeddings[start:end] - embeddings[start:end])
                used.append(subject)
        if not deltas:
            raise FactError(
                f"fact {fact.label!r}: symmetric token replacement needs another subject of {end - start} token(s) "
                f"that fits the prompt; none of {len(fact.replacements)} candidate(s) does (give `replacements:` "
                "in the fact, or more facts of the same relation)"
            )
        stacked = torch.stack(deltas).float()
        info = NoiseInfo(std=float(stacked.std().item()) if stacked.numel() > 1 else 0.0,
                         calibration=f"symmetric token replacement with {len(used)} subject(s): {', '.join(used)}")
        return stacked, info

    def noise_for(self, prepared: PreparedPrompt, embeddings: torch.Tensor) -> NoiseInfo:
        if self.settings.noise is not None:
            return NoiseInfo(std=float(self.settings.noise), calibration="given")
        start, end = prepared.subject_range
        return calibrate_noise([embeddings[start:end]], self.settings.noise_scale, f"this fact's {end - start} subject tokens")

    # -- facts traced together -----------------------------------------------------------
    def _trace_together(self, prepared: Sequence[PreparedPrompt], noise: NoiseInfo | None, count: Callable[[int], None]) -> list[Trace]:
        """Trace facts whose restoration runs share forwards: all kinds and facts of one
        restored token go into the same batches."""
        import torch

        started = time.perf_counter()
        settings = self.settings
        n_layers = self.loaded.n_layers
        for p in prepared:
            check_metric(settings.metric, p)
        runs: list[_FactRun] = []
        cleans: list[_CleanRun] = []
        noises: list[NoiseInfo] = []
        timings: list[dict[str, float]] = []
        with torch.inference_mode():
            if self._suffix is None:
                self._suffix = self._suffix_probe(prepared[0])
            for p in prepared:
                t0 = time.perf_counter()
                clean = self._clean_run(p, settings.kinds)
                t1 = time.perf_counter()
                draws, fact_noise = self._corruption(p, clean, noise)
                corrupted = self._corrupted_run(p, draws, keep=bool(self._suffix))
                timings.append({"clean": t1 - t0, "corrupt": time.perf_counter() - t1})
                runs.append(_FactRun(p, clean.states, draws, corrupted))
                cleans.append(clean)
                noises.append(fact_noise)

            # Sites before the subject see no noise: their IE is exactly 0, never run.
            grids = [{kind: [[0.0] * len(p.token_ids) for _ in range(n_layers)] for kind in settings.kinds} for p in prepared]
            t0 = time.perf_counter()
            # The effects stay on the device until every batch is queued: reading them back
            # after each batch would leave a GPU idle while the host sets up the next one.
            done: list[Site] = []
            means: list[torch.Tensor] = []
            finite: list[_FiniteCheck] = []
            for shape, offset, sites in self._site_groups(runs):
                n_tokens = shape[0]

                def run(chunk: Sequence[Site], offset: int = offset) -> Sequence[Site]:
                    means.append(self._restore(runs, offset, chunk, finite).mean(dim=1))
                    count(len(chunk))
                    return chunk

                size = self._sites_per_batch(n_tokens, n_tokens - offset)
                done += run_in_batches(sites, size, run, on_oom=self._free_memory)
            self._raise_unless_finite(finite)
            for site, value in zip(done, torch.cat(means).tolist() if means else []):
                grids[site.fact][site.kind][site.layer][site.token] = value - runs[site.fact].corrupted.value
            restore = (time.perf_counter() - t0) / len(runs)
        total = time.perf_counter() - started
        traces = []
        for p, run_, clean, fact_noise, fact_timings, grid in zip(prepared, runs, cleans, noises, timings, grids):
            # The restoration forwards are shared: each fact is given an equal part of their time.
            fact_timings |= {"restore": restore, "total": total / len(runs), "facts_together": float(len(runs))}
            traces.append(Trace(
                **prompt_fields(self.loaded, p),
                top_token=self.loaded.tokenizer.decode([clean.top_id]),
                p_clean=clean.prob,
                p_corrupt=run_.corrupted.prob,
                ie={kind: tuple(tuple(row) for row in grid[kind]) for kind in settings.kinds},
                settings=settings.to_dict() | {"device": self.loaded.device},
                noise=fact_noise,
                timings=fact_timings,
                versions=_versions(),
                metric=settings.metric,
                clean_value=clean.value,
                corrupt_value=run_.corrupted.value,
            ))
        return traces

    def _site_count(self, prepared: PreparedPrompt) -> int:
        return len(self.settings.kinds) * self.loaded.n_layers * (len(prepared.token_ids) - prepared.subject_range[0])

    def _site_groups(self, runs: Sequence[_FactRun]) -> list[tuple[tuple[int, tuple[int, int], int], int, list[Site]]]:
        """(shape, offset, sites) groups, each run as batches of one suffix. Facts of one
        shape batch together. On the KV-suffix path a group is one restored token, its sites
        of every kind and fact sorted by the first layer that must run (so a batch wastes no
        layer); otherwise a group is all sites, run from position 0."""
        n_layers = self.loaded.n_layers
        by_shape: dict[tuple[int, tuple[int, int], int], list[int]] = {}
        for i, run in enumerate(runs):
            by_shape.setdefault(run.shape, []).append(i)
        # By first computed layer; among the windows that start at layer 0, the longest
        # first, so that a batch cut from them holds the site the others fork from (`_forks`).
        order = lambda site: (self._first_real_layer(site.kind, site.layer), -self._window(site).stop)  # noqa: E731
        groups = []
        for shape, facts in by_shape.items():
            n_tokens, (start, _end), _rows = shape
            per_token = [[Site(f, kind, layer, token) for f in facts for kind in self.settings.kinds for layer in range(n_layers)]
                         for token in range(start, n_tokens)]
            if self._suffix:
                groups += [(shape, sites[0].token, sorted(sites, key=order)) for sites in per_token]
            else:
                groups.append((shape, 0, [site for sites in per_token for site in sites]))
        return groups

    def _facts_together(self, n_tokens: int) -> int:
        """How many facts of one shape share restoration forwards: enough to fill a batch of
        the last token's sites (the smallest group), at most 64. On a CPU, whose batches are
        capped small, SmolLM2's 90 sites of one token already fill one: facts go one by one."""
        sites = self._sites_per_batch(n_tokens, 1)
        return max(1, min(64, sites // max(1, len(self.settings.kinds) * self.loaded.n_layers)))

    def _window(self, site: Site) -> range:
        return restored_layers(site.kind, site.layer, self.loaded.n_layers, self.settings.window)

    def _forks(self, sites: Sequence[Site]) -> dict[int, int]:
        """Sites that start from another site's state instead of layer 0 (KV-suffix path):
        {index: donor index}. Windows clipped at layer 0 share their start: an mlp or attn
        site restoring layers 0..e-1 of a token computes, up to layer e-1, exactly what a
        site of the same fact, kind and token does whose window starts at 0 too and ends
        later (both restore every layer so far, from the same corrupted embeddings). So it
        runs from layer e on only, from the donor's output of layer e - 1, restoring nothing
        itself. The donor is the longest such window in the batch. Window 10: the sites of
        layers 0-4 start at layers 5-9: 3.5% less work on SmolLM2."""
        if not self._suffix:
            return {}
        clipped = []  # (site, (fact, kind, token), window end) of the mlp/attn windows from layer 0
        for i, site in enumerate(sites):
            window = self._window(site)
            if site.kind != "hidden" and window.start == 0:
                clipped.append((i, (site.fact, site.kind, site.token), window.stop))
        longest: dict[tuple[int, str, int], tuple[int, int]] = {}  # (fact, kind, token) -> (window end, site)
        for i, key, end in clipped:
            if end > longest.get(key, (0, i))[0]:
                longest[key] = (end, i)
        return {i: longest[key][1] for i, key, end in clipped if end < longest[key][0]}

    def _first_real_layer(self, kind: str, layer: int) -> int:
        """The first layer a restoration run must compute: layers before it see exactly the
        corrupted run. A restored hidden state is the output of its layer, so that layer can
        be replayed (with the restoration applied to the replayed output)."""
        if kind == "hidden":
            return layer + 1
        return restored_layers(kind, layer, self.loaded.n_layers, self.settings.window).start

    # -- runs ----------------------------------------------------------------------------
    def _forward(self, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        """Logits at the last position for each row, in float32 (softmax and effects are
        computed in float32 whatever the model's dtype)."""
        kwargs: dict[str, Any] = {"use_cache": False}
        if cache is not None:
            kwargs = {"use_cache": True, self._cache_kwarg: cache}
        with attention_backends(self.loaded.device), fused_tanh_gelu(self._gelu_sites):
            out = self.loaded.model(input_ids=input_ids, **kwargs, **self._logits_kwargs)
        return out.logits[:, -1, :].float()

    def _clean_run(self, prepared: PreparedPrompt, kinds: Sequence[str], measure: bool = True) -> _CleanRun:
        """The clean prompt: probabilities, the metric's value (NaN without `measure`: the
        embeddings alone must not need, say, a distractor) and the states of `kinds`."""
        import torch

        adapter = self.loaded.adapter
        n_tokens = len(prepared.token_ids)
        states: dict[tuple[str, int], torch.Tensor] = {}
        captured: dict[str, torch.Tensor] = {}

        def keep(key: tuple[str, int] | str) -> Callable[[torch.Tensor], None]:
            def edit(t: torch.Tensor) -> None:
                t = t.reshape(-1, n_tokens, t.shape[-1])[0].detach().clone()
                if isinstance(key, str):
                    captured[key] = t
                else:
                    states[key] = t

            return edit

        edits: dict[str, Callable[[torch.Tensor], None]] = {adapter.embed: keep("embed")}
        for kind in kinds:
            for layer in range(self.loaded.n_layers):
                edits[adapter.site_path(kind, layer)] = keep((kind, layer))
        input_ids = torch.tensor([prepared.token_ids], device=self.loaded.device)
        with torch.inference_mode(), edit_outputs(self.loaded.model, edits):
            logits = self._forward(input_ids)
        self._check_finite(logits, "the clean run", prepared)
        probs = torch.softmax(logits[0], dim=-1)
        return _CleanRun(
            prob=float(probs[prepared.target_id].item()),
            value=float(metric_values(self.settings.metric, logits, prepared)[0].item()) if measure else float("nan"),
            top_id=int(probs.argmax().item()),
            states=states,
            embeddings=captured["embed"],
        )

    def _corrupted_run(self, prepared: PreparedPrompt, draws: torch.Tensor, keep: bool) -> _CorruptedRun:
        """The `samples` noisy runs of the whole prompt; with `keep`, also every decoder
        layer's output and the KV cache, which the suffix runs start from."""
        import torch
        from transformers import DynamicCache

        samples, n_tokens = draws.shape[0], len(prepared.token_ids)
        outputs: list[torch.Tensor] = []
        rests: list[tuple[Any, ...] | None] = []
        mlp_outputs: list[torch.Tensor] = []
        handles = []
        if keep:
            for layer in range(self.loaded.n_layers):
                module = self.loaded.model.get_submodule(self.loaded.adapter.layer_path(layer))
                handles.append(module.register_forward_hook(_output_keeper(outputs, rests)))
                mlp = self.loaded.model.get_submodule(self.loaded.adapter.site_path("mlp", layer))
                handles.append(mlp.register_forward_hook(_output_keeper(mlp_outputs, shape=(samples, n_tokens))))
        # A cache without the config: plain full-length layers (no sliding-window trimming),
        # so every prefix length can be cut from it exactly.
        cache = DynamicCache() if keep else None
        input_ids = torch.tensor([prepared.token_ids], device=self.loaded.device).expand(samples, n_tokens)
        edits = {self.loaded.adapter.embed: _noise_adder(draws, prepared.subject_range, n_tokens, offset=0)}
        try:
            with edit_outputs(self.loaded.model, edits):
                logits = self._forward(input_ids, cache)
        finally:
            for handle in handles:
                handle.remove()
        self._check_finite(logits, "the corrupted run", prepared)
        probs = torch.softmax(logits, dim=-1)[:, prepared.target_id]
        values = metric_values(self.settings.metric, logits, prepared)
        keys_values = cache_tensors(cache) if cache is not None else []
        return _CorruptedRun(
            prob=float(probs.mean().item()), value=float(values.mean().item()),
            outputs=outputs, output_rest=rests, keys_values=keys_values, mlp_outputs=mlp_outputs,
        )

    def _restore(self, runs: Sequence[_FactRun], offset: int, sites: Sequence[Site], finite: list[_FiniteCheck] | None = None) -> torch.Tensor:
        """Corrupted runs with restorations, `samples` rows per site, over prompt positions
        `offset`.. only. The sites' facts have one shape (`_FactRun.shape`). With offset > 0
        (KV-suffix path) every site restores token `offset` and the caches supply positions
        < offset. Returns the metric's values (the target's probabilities by default),
        (sites, samples), in the order of `sites`; they run sorted by the first layer each
        computes (`_first_real_layer`, or its window's end for a fork: `_forks`). The logits
        are checked for NaN/inf at once, or later by the caller through `finite` (so the host
        need not wait for the GPU after each batch)."""
        forks = self._forks(sites)
        firsts = [self._window(s).stop if i in forks else self._first_real_layer(s.kind, s.layer) if self._suffix else 0
                  for i, s in enumerate(sites)]
        order = sorted(range(len(sites)), key=firsts.__getitem__)
        moved = {old: new for new, old in enumerate(order)}
        values = self._restore_sorted(runs, offset, [sites[i] for i in order], [firsts[i] for i in order],
                                      {moved[i]: moved[donor] for i, donor in forks.items()}, finite)
        if order == list(range(len(sites))):
            return values
        return values.index_select(0, device_tensor([moved[i] for i in range(len(sites))], values.device))

    def _restore_sorted(self, runs: Sequence[_FactRun], offset: int, sites: Sequence[Site], firsts: Sequence[int],
                        forks: dict[int, int], finite: list[_FiniteCheck] | None) -> torch.Tensor:
        """`_restore` of sites sorted by their first computed layer `firsts` (row = site *
        samples + sample); `forks` maps a site that starts from another's state to it."""
        import torch

        adapter = self.loaded.adapter
        base = runs[sites[0].fact].prepared
        samples = runs[sites[0].fact].draws.shape[0]
        n_tokens = len(base.token_ids)
        positions = n_tokens - offset
        n_layers = self.loaded.n_layers
        first = firsts[0]
        rows = BatchRows([s.fact for s in sites], samples, self.loaded.device)
        fact_runs = [runs[f] for f in rows.facts]

        edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        if first == 0:
            edits[adapter.embed] = _noise_adder(rows.gather([r.draws for r in fact_runs]), base.subject_range, n_tokens, offset)
        # Which sites restore each (kind, layer): one pass over the sites, not one per module.
        restored_at: dict[tuple[str, int], list[int]] = {}
        for i, s in enumerate(sites):
            for layer in () if i in forks else self._window(s):
                restored_at.setdefault((s.kind, layer), []).append(i)
        for (kind, layer), restored in restored_at.items():
            clean = torch.stack([r.states[(kind, layer)] for r in fact_runs])  # (facts, tokens, d)
            at = device_tensor([[rows.local[sites[i].fact], sites[i].token] for i in restored], clean.device)
            edits[adapter.site_path(kind, layer)] = _restorer(restored, at[:, 1] - offset, clean[at[:, 0], at[:, 1]], samples, positions)
        replays = self._replays(rows, fact_runs, first, offset)
        cache = suffix_cache([r.corrupted.keys_values for r in fact_runs], rows, offset, first) if self._suffix else None
        prompt_ids = device_tensor([r.prepared.token_ids[offset:] for r in fact_runs], self.loaded.device)
        input_ids = prompt_ids.index_select(0, rows.row_fact)
        layers = self.loaded.model.get_submodule(adapter.layers)
        stand_ins = self._partial_mlps(sites, firsts, forks, restored_at, rows, fact_runs, offset)
        head = self._readout.head(self.loaded.model.get_submodule(self._head_path)) if self._head_path is not None else None
        if head is not None:
            stand_ins[self._head_path] = head  # logits into the readout's buffer
        # The MLPs' stand-ins go in first: a staggered layer takes its children as they are
        # then. The layers before the hooks, so that hooks land on the stand-ins.
        with replaced_submodules(self.loaded.model, stand_ins):
            replays |= self._staggered(layers, rows, fact_runs, cache, firsts, forks, offset)
            with replaced_layers(layers, replays), edit_outputs(self.loaded.model, edits):
                logits = self._forward(input_ids, cache)
        where = f"a restoration run ({', '.join(dict.fromkeys(s.kind for s in sites))})"
        ok = finite_rows(logits)
        for local, run in enumerate(fact_runs):
            fact_rows = rows.fact_rows(local)
            check = _FiniteCheck((ok if fact_rows is None else ok.index_select(0, fact_rows)).all(), where, run.prepared)
            if finite is None:
                self._raise_unless_finite([check])
            else:
                finite.append(check)
        metric = self.settings.metric
        targets = device_tensor([r.prepared.target_id for r in fact_runs], logits.device).index_select(0, rows.row_fact)
        distractors = None
        if metric == "logit_diff":
            distractors = device_tensor([r.prepared.distractor_id for r in fact_runs], logits.device).index_select(0, rows.row_fact)
        return self._readout.values(metric, logits, targets, distractors).view(len(sites), samples)

    def _free_memory(self) -> None:
        """Before a batch is retried at half the size after running out of memory."""
        self._readout.clear()
        _free_cuda_memory()

    def _replays(self, rows: BatchRows, fact_runs: Sequence[_FactRun], first: int, offset: int) -> dict[int, Any]:
        """Stand-ins for layers 0..first-1, all returning layer first-1's corrupted output at
        positions offset.. for each row's fact (what the first computed layer reads; earlier
        ones are ignored)."""
        if first == 0:
            return {}
        main = rows.gather([r.corrupted.outputs[first - 1][:, offset:] for r in fact_runs])
        rest = fact_runs[0].corrupted.output_rest[first - 1]
        output = main if rest is None else (main, *rest)
        # One stand-in per layer: a hook on one replayed layer must not fire for the others.
        return {layer: replay_layer(output) for layer in range(first)}

    def _partial_mlps(self, sites: Sequence[Site], firsts: Sequence[int], forks: dict[int, int], restored_at: dict[tuple[str, int], list[int]],
                      rows: BatchRows, fact_runs: Sequence[_FactRun], offset: int) -> dict[str, Any]:
        """Stand-ins (`partial_module`) for the MLPs of the layers a restoration forward runs,
        by module path, that compute only the (row, position) pairs whose output can matter.
        Not needed: positions but the last in the last layer (the logits read the last one);
        the restored position of an MLP that a site restores (its clean state replaces it).
        Copied from the corrupted run (KV-suffix path): an mlp or attn site's positions after
        its restored token in its first restored layer, whose MLP input is the corrupted
        run's there (the layers before it are, and an attention restoration at the token
        changes no other position of its own layer)."""
        import torch

        adapter = self.loaded.adapter
        n_layers, samples = self.loaded.n_layers, rows.samples
        positions = len(fact_runs[0].prepared.token_ids) - offset
        device = self.loaded.device
        width = model_width(self.loaded.model.config)
        stand_ins: dict[str, Any] = {}
        if not width:
            return stand_ins
        for layer in range(firsts[0], n_layers):
            started = bisect_right(firsts, layer)  # sites that run this layer: the leading ones
            need = torch.ones(started, samples, positions, dtype=torch.bool)
            if layer == n_layers - 1:
                need[:, :, :-1] = False
            for i in restored_at.get(("mlp", layer), ()):
                need[i, :, sites[i].token - offset] = False
            copied = [i for i in range(started) if firsts[i] == layer and sites[i].kind != "hidden" and i not in forks] \
                if self._suffix and positions > 1 else []
            for i in copied:
                need[i, :, 1:] = False
            if bool(need.all()):
                continue
            fill = None
            if copied:
                batch_rows = (torch.tensor(copied)[:, None] * samples + torch.arange(samples)[None, :]).reshape(-1)
                pairs = (batch_rows[:, None] * positions + torch.arange(1, positions)[None, :]).reshape(-1)
                fill = self._mlp_copier(rows, fact_runs, layer, offset, device_tensor(batch_rows, device), device_tensor(pairs, device))
            path = adapter.site_path("mlp", layer)
            compute = device_tensor(need.reshape(-1).nonzero().squeeze(1), device)
            stand_ins[path] = partial_module(self.loaded.model.get_submodule(path), started * samples, positions, width, compute, fill)
        return stand_ins

    @staticmethod
    def _mlp_copier(rows: BatchRows, fact_runs: Sequence[_FactRun], layer: int, offset: int, batch_rows: torch.Tensor,
                    pairs: torch.Tensor) -> Callable[[torch.Tensor], None]:
        """Write the corrupted run's MLP output of `layer` at positions offset + 1.. of
        `batch_rows` into the flat (row * positions + position) entries `pairs` of `out`."""
        def fill(out: torch.Tensor) -> None:
            values = rows.gather([r.corrupted.mlp_outputs[layer][:, offset + 1 :] for r in fact_runs], batch_rows=batch_rows)
            out.index_copy_(0, pairs, values.reshape(-1, out.shape[-1]).to(out.dtype))

        return fill

    def _staggered(self, layers: Any, rows: BatchRows, fact_runs: Sequence[_FactRun], cache: Any, firsts: Sequence[int],
                   forks: dict[int, int], offset: int) -> dict[int, Any]:
        """Stand-ins for the layers between the batch's first and last site's first computed
        layer: each runs only the rows of the sites that have started (sites are sorted by
        first layer, so these are the leading rows) and hands back the corrupted run's
        output for the rest, but for the forks that start at the next layer: their donor's
        output (`_forks`)."""
        samples = rows.samples
        stand_ins = {}
        for index in range(firsts[0], firsts[-1]):
            started = bisect_right(firsts, index)

            def idle(out: torch.Tensor, index: int = index, started: int = started) -> Any:
                return rows.gather([r.corrupted.outputs[index][:, offset:] for r in fact_runs], start_site=started, out=out)

            starting = [(site, donor) for site, donor in forks.items() if firsts[site] == index + 1]
            copies = None
            if starting:
                targets = [site * samples + sample for site, _ in starting for sample in range(samples)]
                sources = [donor * samples + sample for _, donor in starting for sample in range(samples)]
                copies = (device_tensor(targets, rows.device), device_tensor(sources, rows.device))
            stand_ins[index] = staggered_layer(layers[index], len(firsts) * samples, started * samples, idle, cache, index, copies)
        return stand_ins

    def _suffix_probe(self, prepared: PreparedPrompt) -> bool:
        """Whether this model gives the same result on the KV-suffix path as on the whole
        prompt: one noiseless run of the prompt, then its second half through the suffix
        machinery (two sites: layer 0 replayed, layer 1 staggered, the cache for the first
        half). A model that ignores or mangles the cache, or whose layers cannot be replayed
        or run on part of the batch, fails it and every trace then runs whole prompts. The
        one place this is decided."""
        import torch

        ids = (list(prepared.token_ids) * 2)[: max(2, len(prepared.token_ids))]
        probe = replace(prepared, token_ids=tuple(ids))
        width = self.loaded.model.get_submodule(self.loaded.adapter.embed).weight.shape[-1]
        zero = torch.zeros((1, 1, width), device=self.loaded.device, dtype=self._dtype)
        previous = self._suffix
        try:
            self._suffix = True
            # Noise 0 on token 0: the "corrupted" run is the clean one.
            base = self._corrupted_run(replace(probe, subject_range=(0, 1)), zero, keep=True)
            offset = len(ids) // 2
            # Two sites restoring layers 0 and 1: layer 1 then runs for the first site's rows
            # only (a staggered start), layer 0 is replayed.
            second = min(1, self.loaded.n_layers - 1)
            states = {("hidden", layer): base.outputs[layer][0] for layer in {0, second}}
            run = _FactRun(replace(probe, subject_range=(0, 1)), states, zero, base)
            probs = self._restore([run], offset, [Site(0, "hidden", 0, offset), Site(0, "hidden", second, offset)])
            tolerance = 1e-4 if self._dtype == torch.float32 else 2e-2
            error = float((probs - base.value).abs().max().item()) / max(1.0, abs(base.value))
            if error > tolerance:
                self.suffix_fallback_reason = f"KV-suffix probe differs from the whole prompt by {error:.3g}"
                return False
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means: use the plain path
            self.suffix_fallback_reason = f"KV-suffix probe failed: {type(exc).__name__}: {exc}"
            return False
        finally:
            self._suffix = previous

    def _check_finite(self, logits: torch.Tensor, where: str, prepared: PreparedPrompt) -> None:
        """NaN or inf fails the trace, naming the first layer whose output has it."""
        if not bool(_all_finite(logits)):
            raise self._not_finite(where, prepared)

    def _raise_unless_finite(self, checks: Sequence[_FiniteCheck]) -> None:
        """The deferred checks of restoration runs, read back from the device at once."""
        import torch

        if checks:
            for check, ok in zip(checks, torch.stack([c.flag for c in checks]).tolist()):
                if not ok:
                    raise self._not_finite(check.where, check.prepared)

    def _not_finite(self, where: str, prepared: PreparedPrompt) -> TraceError:
        layer = self._first_nonfinite_layer(prepared)
        at = f"; it first appears in the output of layer {layer} ({self.loaded.adapter.layer_path(layer)})" if layer is not None else ""
        return TraceError(
            f"non-finite logits (NaN or inf) in {where} of {prepared.fact.label!r} with dtype {self.settings.dtype}{at}; "
            "try --dtype float32, or check the weights"
        )

    def _first_nonfinite_layer(self, prepared: PreparedPrompt) -> int | None:
        """Re-run the clean prompt, checking each decoder layer's output."""
        import torch

        found: list[int] = []

        def check(layer: int) -> Callable[[torch.Tensor], None]:
            def edit(t: torch.Tensor) -> None:
                if not found and not bool(torch.isfinite(t).all()):
                    found.append(layer)

            return edit

        adapter = self.loaded.adapter
        edits = {adapter.layer_path(layer): check(layer) for layer in range(self.loaded.n_layers)}
        input_ids = torch.tensor([prepared.token_ids], device=self.loaded.device)
        with torch.inference_mode(), edit_outputs(self.loaded.model, edits):
            self._forward(input_ids)
        return found[0] if found else None

    def _sites_per_batch(self, n_tokens: int, positions: int) -> int:
        """Sites per forward: the setting, or as many as a memory budget allows; on a CPU
        also capped where bigger forwards stop paying off."""
        if self.settings.batch_size is not None:
            return self.settings.batch_size
        element = torch_dtype(self.settings.dtype).itemsize
        rows = auto_batch_rows(self.loaded.model.config, n_tokens, positions, self.loaded.device, element)
        if not self.loaded.device.startswith("cuda"):
            rows = min(rows, cpu_rows_cap(positions))
        return max(1, rows // self.settings.samples)


def _prompt_shape(prepared: PreparedPrompt) -> tuple[int, tuple[int, int]]:
    """Token count and subject span: facts whose prompts share them can share restoration
    forwards (same suffix lengths at every restored token)."""
    return len(prepared.token_ids), prepared.subject_range


def _output_keeper(outputs: list[Any], rests: list[Any] | None = None, shape: tuple[int, int] | None = None) -> Callable[..., None]:
    """A forward hook keeping a copy of each main output (viewed as (*shape, d) when given:
    OPT's MLP output comes as (batch * tokens, d)) and, into `rests`, the rest of its tuple."""
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        main = main_tensor(output)
        outputs.append((main if shape is None else main.reshape(*shape, main.shape[-1])).detach().clone())
        if rests is not None:
            rests.append(tuple(output[1:]) if isinstance(output, tuple) else None)

    return hook


def _noise_adder(draws: torch.Tensor, subject_range: tuple[int, int], n_tokens: int, offset: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Add the noise draws (one per batch row: (rows, subject tokens, d)) to the subject's
    embeddings, in rows that start at prompt position `offset`."""
    start, end = subject_range
    lo = max(start, offset)

    def edit(t: torch.Tensor) -> torch.Tensor:
        if lo >= end:
            return t
        view = t.view(-1, n_tokens - offset, t.shape[-1])
        view[:, lo - offset : end - offset] += draws[:, lo - start :]
        return t

    return edit


def _all_finite(logits: torch.Tensor) -> torch.Tensor:
    """Whether every logit is finite, as a 0-d tensor: the smallest and largest are NaN or
    infinite exactly when some logit is, and no full-size boolean tensor is made."""
    import torch

    low, high = torch.aminmax(logits)
    return torch.isfinite(low) & torch.isfinite(high)


def _restorer(sites: list[int], tokens: torch.Tensor, states: torch.Tensor, samples: int, positions: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Set the rows of each listed site back to its clean state: `tokens` are the sites'
    restored positions within the module output (which covers `positions` positions),
    `states` their clean values (sites, d)."""
    import torch

    device = states.device
    site_index = device_tensor(sites, device)
    row_index = (site_index[:, None] * samples + torch.arange(samples, device=device)[None, :]).reshape(-1)
    token_index = tokens.repeat_interleave(samples)
    values = states.repeat_interleave(samples, dim=0)

    def edit(t: torch.Tensor) -> torch.Tensor:
        view = t.view(-1, positions, t.shape[-1])
        view[row_index, token_index] = values.to(view.dtype)
        return t

    return edit


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prompt_fields(loaded: LoadedModel, prepared: PreparedPrompt) -> dict[str, Any]:
    """The Trace fields that say what was traced (model, fact, tokens), not what was measured."""
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


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from fact_locator import __version__

    return {"fact_locator": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
