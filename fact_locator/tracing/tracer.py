"""The causal tracer: clean run, corrupted run, and corrupted-with-restoration runs,
batched over sites and noise samples."""

from __future__ import annotations

import inspect
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fact_locator.errors import FactError, TraceError
from fact_locator.facts import Fact
from fact_locator.models.loading import LoadedModel, torch_dtype
from fact_locator.tracing.corruption import calibrate_noise, make_noise
from fact_locator.tracing.fast import auto_batch_rows, cache_tensors, cpu_rows_cap, replaced_layers, replay_layer, run_in_batches, staggered_layer, suffix_cache
from fact_locator.tracing.hooks import edit_outputs, main_tensor
from fact_locator.tracing.metrics import check_metric, metric_values
from fact_locator.tracing.prompt import PreparedPrompt, prepare_prompt
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import NoiseInfo, Trace

if TYPE_CHECKING:
    import torch

__all__ = ["Progress", "Tracer", "prompt_fields", "restored_layers"]

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


# A site to restore: (layer, token) within one kind.
Site = tuple[int, int]


class Tracer:
    """Traces facts on one loaded model with one set of settings.

    Restoration runs are grouped by restored token and, where the model supports it (decided
    once by `_suffix_probe`), run only the positions from that token on, on top of the
    corrupted run's KV cache, starting at the earliest restored layer of the batch; the
    layers before it replay the corrupted run's output, and each layer above it runs only
    the sites whose first restored layer it has reached. Otherwise every run is a forward of
    the whole prompt. Either way the numbers equal the plain loop's (tests/reference_tracer.py).
    """

    def __init__(self, loaded: LoadedModel, settings: TraceSettings | None = None):
        self.loaded = loaded
        self.settings = settings or TraceSettings()
        self._dtype = torch_dtype(self.settings.dtype)
        forward = inspect.signature(loaded.model.forward).parameters
        self._logits_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        # transformers renames past_key_values to `cache` model by model (GPT-J already).
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._suffix: bool | None = None  # decided by the probe on the first trace
        self.suffix_fallback_reason: str | None = None

    # -- public ------------------------------------------------------------------------
    def prepare(self, fact: Fact) -> PreparedPrompt:
        return prepare_prompt(self.loaded.tokenizer, fact, self.loaded.max_length)

    def embed(self, prepared: PreparedPrompt) -> torch.Tensor:
        """Output of the embedding module for the prompt, (tokens, d)."""
        return self._clean_run(prepared, kinds=()).embeddings

    @property
    def uses_kv_suffix(self) -> bool | None:
        """Whether restoration runs use the KV-suffix path (None until the first trace)."""
        return self._suffix

    def trace(self, fact: Fact, noise: NoiseInfo | None = None, progress: Progress | None = None) -> Trace:
        """Trace one fact. `noise` overrides the per-fact calibration (fact sets share one)."""
        return self._trace(self.prepare(fact), noise, progress)

    def trace_many(self, facts: Sequence[Fact], noise: NoiseInfo | None = None, progress: Progress | None = None) -> list[Trace]:
        """Trace several facts; `progress` counts the sites of all of them together."""
        prepared = [self.prepare(fact) for fact in facts]
        total = sum(self._site_count(p) for p in prepared)
        traces: list[Trace] = []
        offset = 0
        for p in prepared:
            shifted = None if progress is None else (lambda done, _all, base=offset: progress(base + done, total))
            traces.append(self._trace(p, noise, shifted))
            offset += self._site_count(p)
        return traces

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
                deltas.append(self._clean_run(other, kinds=()).embeddings[start:end] - embeddings[start:end])
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

    # -- one fact ------------------------------------------------------------------------
    def _trace(self, prepared: PreparedPrompt, noise: NoiseInfo | None, progress: Progress | None) -> Trace:
        import torch

        started = time.perf_counter()
        settings = self.settings
        n_layers = self.loaded.n_layers
        n_tokens = len(prepared.token_ids)
        start, end = prepared.subject_range
        check_metric(settings.metric, prepared)
        with torch.inference_mode():
            if self._suffix is None:
                self._suffix = self._suffix_probe(prepared)
            clean = self._clean_run(prepared, settings.kinds)
            timings = {"clean": time.perf_counter() - started}
            draws, noise = self._corruption(prepared, clean, noise)

            t0 = time.perf_counter()
            corrupted = self._corrupted_run(prepared, draws, keep=self._suffix)
            timings["corrupt"] = time.perf_counter() - t0

            total = self._site_count(prepared)
            done = 0
            ie: dict[str, tuple[tuple[float, ...], ...]] = {}
            for kind in settings.kinds:
                t0 = time.perf_counter()
                grid = [[0.0] * n_tokens for _ in range(n_layers)]
                for offset, sites in self._site_groups(kind, prepared):

                    def run(chunk: Sequence[Site], kind: str = kind, offset: int = offset) -> list[float]:
                        nonlocal done
                        probs = self._restore(prepared, draws, clean, corrupted, kind, offset, chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                        return probs.mean(dim=1).tolist()

                    size = self._sites_per_batch(n_tokens, n_tokens - offset)
                    for (layer, token), p in zip(sites, run_in_batches(sites, size, run, on_oom=_free_cuda_memory)):
                        # Sites before the subject see no noise: their IE is exactly 0, never run.
                        grid[layer][token] = p - corrupted.value
                ie[kind] = tuple(tuple(row) for row in grid)
                timings[kind] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - started
        tokenizer = self.loaded.tokenizer
        return Trace(
            **prompt_fields(self.loaded, prepared),
            top_token=tokenizer.decode([clean.top_id]),
            p_clean=clean.prob,
            p_corrupt=corrupted.prob,
            ie=ie,
            settings=settings.to_dict() | {"device": self.loaded.device},
            noise=noise,
            timings=timings,
            versions=_versions(),
            metric=settings.metric,
            clean_value=clean.value,
            corrupt_value=corrupted.value,
        )

    def _site_count(self, prepared: PreparedPrompt) -> int:
        return len(self.settings.kinds) * self.loaded.n_layers * (len(prepared.token_ids) - prepared.subject_range[0])

    def _site_groups(self, kind: str, prepared: PreparedPrompt) -> list[tuple[int, list[Site]]]:
        """(offset, sites) groups, each run as batches of one suffix: per restored token on
        the KV-suffix path (sites sorted by first layer that must run, so a batch wastes few
        layers), one group of all sites from position 0 otherwise."""
        n_layers = self.loaded.n_layers
        tokens = range(prepared.subject_range[0], len(prepared.token_ids))
        if not self._suffix:
            return [(0, [(layer, token) for layer in range(n_layers) for token in tokens])]
        first = lambda site: self._first_real_layer(kind, site[0])  # noqa: E731
        return [(token, sorted(((layer, token) for layer in range(n_layers)), key=first)) for token in tokens]

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
        out = self.loaded.model(input_ids=input_ids, **kwargs, **self._logits_kwargs)
        return out.logits[:, -1, :].float()

    def _clean_run(self, prepared: PreparedPrompt, kinds: Sequence[str]) -> _CleanRun:
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
            value=float(metric_values(self.settings.metric, logits, prepared)[0].item()),
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
        handles = []
        if keep:
            for layer in range(self.loaded.n_layers):
                module = self.loaded.model.get_submodule(self.loaded.adapter.layer_path(layer))
                handles.append(module.register_forward_hook(_output_keeper(outputs, rests)))
        # A cache without the config: plain full-length layers (no sliding-window trimming),
        # so every prefix length can be cut from it exactly.
        cache = DynamicCache() if keep else None
        input_ids = torch.tensor([prepared.token_ids], device=self.loaded.device).expand(samples, n_tokens)
        edits = {self.loaded.adapter.embed: _noise_adder(draws, prepared.subject_range, n_tokens, offset=0, copies=1)}
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
            outputs=outputs, output_rest=rests, keys_values=keys_values,
        )

    def _restore(
        self,
        prepared: PreparedPrompt,
        draws: torch.Tensor,
        clean: _CleanRun | dict[tuple[str, int], torch.Tensor],
        corrupted: _CorruptedRun,
        kind: str,
        offset: int,
        sites: Sequence[Site],
    ) -> torch.Tensor:
        """Corrupted runs with restorations, `samples` rows per site (row = site * samples +
        sample), over prompt positions `offset`.. only. With offset > 0 (KV-suffix path)
        every site restores token `offset` and the cache supplies positions < offset.
        Returns the metric's values (the target's probabilities by default), (sites, samples)."""
        import torch

        adapter = self.loaded.adapter
        states = clean.states if isinstance(clean, _CleanRun) else clean
        samples = draws.shape[0]
        n_tokens = len(prepared.token_ids)
        positions = n_tokens - offset
        n_layers = self.loaded.n_layers
        firsts = [self._first_real_layer(kind, layer) if self._suffix else 0 for layer, _ in sites]
        if firsts != sorted(firsts):
            raise ValueError("sites of one restoration run must be sorted by their first computed layer")
        first = firsts[0]

        edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        if first == 0:
            edits[adapter.embed] = _noise_adder(draws, prepared.subject_range, n_tokens, offset, copies=len(sites))
        for layer in range(n_layers):
            targets = [
                (i, token)
                for i, (site_layer, token) in enumerate(sites)
                if layer in restored_layers(kind, site_layer, n_layers, self.settings.window)
            ]
            if targets:
                edits[adapter.site_path(kind, layer)] = _restorer(targets, samples, positions, offset, states[(kind, layer)])
        replays = self._replays(corrupted, first, offset, len(sites))
        cache = suffix_cache(corrupted.keys_values, offset, len(sites), first) if self._suffix else None
        input_ids = torch.tensor([prepared.token_ids[offset:]], device=self.loaded.device).expand(len(sites) * samples, positions)
        layers = self.loaded.model.get_submodule(adapter.layers)
        replays |= self._staggered(layers, corrupted, cache, firsts, offset, samples)
        # Replace the layers first, so that hooks on a replayed layer land on its stand-in.
        with replaced_layers(layers, replays), edit_outputs(self.loaded.model, edits):
            logits = self._forward(input_ids, cache)
        self._check_finite(logits, f"a restoration run ({kind})", prepared)
        return metric_values(self.settings.metric, logits, prepared).view(len(sites), samples)

    def _replays(self, corrupted: _CorruptedRun, first: int, offset: int, copies: int) -> dict[int, Any]:
        """Stand-ins for layers 0..first-1, all returning layer first-1's corrupted output at
        positions offset.. (what the first computed layer reads; earlier ones are ignored)."""
        if first == 0:
            return {}
        main = corrupted.outputs[first - 1][:, offset:].repeat(copies, 1, 1)
        rest = corrupted.output_rest[first - 1]
        output = main if rest is None else (main, *rest)
        # One stand-in per layer: a hook on one replayed layer must not fire for the others.
        return {layer: replay_layer(output) for layer in range(first)}

    def _staggered(self, layers: Any, corrupted: _CorruptedRun, cache: Any, firsts: Sequence[int], offset: int, samples: int) -> dict[int, Any]:
        """Stand-ins for the layers between the batch's first and last site's first computed
        layer: each runs only the rows of the sites that have started (sites are sorted by
        first layer, so these are the leading rows) and hands back the corrupted run's
        output for the rest."""
        out = {}
        for index in range(firsts[0], firsts[-1]):
            started = bisect_right(firsts, index)
            out[index] = staggered_layer(layers[index], len(firsts) * samples, started * samples, corrupted.outputs[index][:, offset:], cache, index)
        return out

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
            sites = [(0, offset), (second, offset)]
            probs = self._restore(replace(probe, subject_range=(0, 1)), zero, states, base, "hidden", offset, sites)
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
        import torch

        # A row sum is finite unless a logit is NaN/inf (or the sum overflows: then the exact
        # elementwise check decides); one reduction instead of a full-size boolean tensor.
        if bool(torch.isfinite(logits.sum(dim=-1)).all()) or bool(torch.isfinite(logits).all()):
            return
        layer = self._first_nonfinite_layer(prepared)
        at = f"; it first appears in the output of layer {layer} ({self.loaded.adapter.layer_path(layer)})" if layer is not None else ""
        raise TraceError(
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


def _output_keeper(outputs: list[Any], rests: list[Any]) -> Callable[..., None]:
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        outputs.append(main_tensor(output).detach().clone())
        rests.append(tuple(output[1:]) if isinstance(output, tuple) else None)

    return hook


def _noise_adder(
    draws: torch.Tensor, subject_range: tuple[int, int], n_tokens: int, offset: int, copies: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Add the noise draws to the subject's embeddings, for `copies` groups of `samples`
    rows that start at prompt position `offset`."""
    start, end = subject_range
    lo = max(start, offset)

    def edit(t: torch.Tensor) -> torch.Tensor:
        if lo >= end:
            return t
        view = t.view(-1, n_tokens - offset, t.shape[-1])
        view[:, lo - offset : end - offset] += draws[:, lo - start :].repeat(copies, 1, 1)
        return t

    return edit


def _restorer(
    targets: list[tuple[int, int]], samples: int, positions: int, offset: int, clean_state: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Set the rows of each target site back to the clean value at its token (the module
    output covers prompt positions offset..offset+positions-1)."""
    import torch

    device = clean_state.device
    site_index = torch.tensor([i for i, _ in targets], device=device)
    tokens = torch.tensor([t for _, t in targets], device=device)
    row_index = (site_index[:, None] * samples + torch.arange(samples, device=device)[None, :]).reshape(-1)
    token_index = tokens.repeat_interleave(samples)
    values = clean_state[token_index]
    token_index = token_index - offset

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
