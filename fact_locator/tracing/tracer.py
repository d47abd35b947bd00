"""The causal tracer: clean run, corrupted run, and corrupted-with-restoration runs,
batched over sites and noise samples."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.errors import TraceError
from fact_locator.facts import Fact
from fact_locator.models.loading import LoadedModel, torch_dtype
from fact_locator.tracing.corruption import calibrate_noise, make_noise
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.prompt import PreparedPrompt, prepare_prompt
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import NoiseInfo, Trace

if TYPE_CHECKING:
    import torch

__all__ = ["Progress", "Tracer", "restored_layers"]

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
    top_id: int
    states: dict[tuple[str, int], torch.Tensor]  # (kind, layer) -> (tokens, d)
    embeddings: torch.Tensor  # (tokens, d), output of the embedding module


class Tracer:
    """Traces facts on one loaded model with one set of settings."""

    def __init__(self, loaded: LoadedModel, settings: TraceSettings | None = None):
        self.loaded = loaded
        self.settings = settings or TraceSettings()
        self._dtype = torch_dtype(self.settings.dtype)
        forward = inspect.signature(loaded.model.forward).parameters
        self._logits_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    # -- public ------------------------------------------------------------------------
    def prepare(self, fact: Fact) -> PreparedPrompt:
        return prepare_prompt(self.loaded.tokenizer, fact, self.loaded.max_length)

    def embed(self, prepared: PreparedPrompt) -> torch.Tensor:
        """Output of the embedding module for the prompt, (tokens, d)."""
        return self._clean_run(prepared, kinds=()).embeddings

    def trace(self, fact: Fact, noise: NoiseInfo | None = None, progress: Progress | None = None) -> Trace:
        """Trace one fact. `noise` overrides the per-fact calibration (fact sets share one)."""
        import torch

        started = time.perf_counter()
        prepared = self.prepare(fact)
        settings = self.settings
        n_layers = self.loaded.n_layers
        with torch.inference_mode():
            clean = self._clean_run(prepared, settings.kinds)
            timings = {"clean": time.perf_counter() - started}
            start, end = prepared.subject_range
            if noise is None:
                noise = self.noise_for(prepared, clean.embeddings)
            draws = make_noise(settings.samples, end - start, clean.embeddings.shape[-1], noise.std, settings.seed)
            draws = draws.to(device=self.loaded.device, dtype=self._dtype)

            t0 = time.perf_counter()
            p_corrupt = float(self._run(prepared, draws, sites=[(set(), 0)], kind="hidden", clean=clean).mean().item())
            timings["corrupt"] = time.perf_counter() - t0

            n_tokens = len(prepared.token_ids)
            total = len(settings.kinds) * n_layers * (n_tokens - start)
            done = 0
            ie: dict[str, tuple[tuple[float, ...], ...]] = {}
            for kind in settings.kinds:
                t0 = time.perf_counter()
                grid = [[0.0] * n_tokens for _ in range(n_layers)]
                # Sites before the subject see no noise: their IE is exactly 0, no run needed.
                sites = [(layer, token) for layer in range(n_layers) for token in range(start, n_tokens)]
                for batch in _chunks(sites, self._sites_per_batch(n_tokens)):
                    restore = [(set(restored_layers(kind, layer, n_layers, settings.window)), token) for layer, token in batch]
                    probs = self._run(prepared, draws, restore, kind, clean)
                    for (layer, token), p in zip(batch, probs.mean(dim=1).tolist()):
                        grid[layer][token] = p - p_corrupt
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
                ie[kind] = tuple(tuple(row) for row in grid)
                timings[kind] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - started
        tokenizer = self.loaded.tokenizer
        return Trace(
            model=self.loaded.identity,
            fact_id=fact.id,
            subject=fact.subject,
            relation=fact.relation,
            prompt=fact.prompt,
            tokens=prepared.tokens,
            token_ids=prepared.token_ids,
            subject_range=prepared.subject_range,
            target=fact.target,
            target_token=prepared.target_token,
            target_id=prepared.target_id,
            top_token=tokenizer.decode([clean.top_id]),
            p_clean=clean.prob,
            p_corrupt=p_corrupt,
            ie=ie,
            settings=settings.to_dict() | {"device": self.loaded.device},
            noise=noise,
            timings=timings,
            versions=_versions(),
        )

    def noise_for(self, prepared: PreparedPrompt, embeddings: torch.Tensor) -> NoiseInfo:
        if self.settings.noise is not None:
            return NoiseInfo(std=float(self.settings.noise), calibration="given")
        start, end = prepared.subject_range
        return calibrate_noise([embeddings[start:end]], self.settings.noise_scale, f"this fact's {end - start} subject tokens")

    # -- runs ----------------------------------------------------------------------------
    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32) at the last position for each row."""
        import torch

        out = self.loaded.model(input_ids=input_ids, use_cache=False, **self._logits_kwargs)
        logits = out.logits[:, -1, :].float()
        return torch.softmax(logits, dim=-1)

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
            probs = self._forward(input_ids)[0]
        _check_finite(probs, "the clean run")
        return _CleanRun(
            prob=float(probs[prepared.target_id].item()),
            top_id=int(probs.argmax().item()),
            states=states,
            embeddings=captured["embed"],
        )

    def _run(
        self,
        prepared: PreparedPrompt,
        draws: torch.Tensor,
        sites: Sequence[tuple[set[int], int]],
        kind: str,
        clean: _CleanRun,
    ) -> torch.Tensor:
        """Corrupted runs with restorations: one group of `samples` rows per site, each
        site being (layers restored, token). Returns probs of the target, (sites, samples)."""
        import torch

        adapter = self.loaded.adapter
        samples = draws.shape[0]
        n_tokens = len(prepared.token_ids)
        start, end = prepared.subject_range
        rows = len(sites) * samples

        def corrupt(t: torch.Tensor) -> torch.Tensor:
            view = t.view(rows, n_tokens, t.shape[-1])
            view[:, start:end] += draws.repeat(len(sites), 1, 1)
            return t

        edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {adapter.embed: corrupt}
        for layer in range(self.loaded.n_layers):
            targets = [(i, token) for i, (layers, token) in enumerate(sites) if layer in layers]
            if targets:
                edits[adapter.site_path(kind, layer)] = _restorer(targets, samples, n_tokens, clean.states[(kind, layer)])
        input_ids = torch.tensor([prepared.token_ids], device=self.loaded.device).expand(rows, n_tokens)
        with edit_outputs(self.loaded.model, edits):
            probs = self._forward(input_ids)[:, prepared.target_id]
        _check_finite(probs, f"a corrupted run ({kind})")
        return probs.view(len(sites), samples)

    def _sites_per_batch(self, n_tokens: int) -> int:
        if self.settings.batch_size is not None:
            return self.settings.batch_size
        # About 256 rows of activations per forward keeps a CPU busy without swapping.
        return max(1, 256 // (self.settings.samples * max(1, n_tokens // 16)))


def _restorer(
    targets: list[tuple[int, int]], samples: int, n_tokens: int, clean_state: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Set the rows of each target site back to the clean value at its token."""
    import torch

    site_index = torch.tensor([i for i, _ in targets], device=clean_state.device)
    tokens = torch.tensor([t for _, t in targets], device=clean_state.device)
    row_index = (site_index[:, None] * samples + torch.arange(samples, device=clean_state.device)[None, :]).reshape(-1)
    token_index = tokens.repeat_interleave(samples)
    values = clean_state[token_index]

    def edit(t: torch.Tensor) -> torch.Tensor:
        view = t.view(-1, n_tokens, t.shape[-1])
        view[row_index, token_index] = values.to(view.dtype)
        return t

    return edit


def _check_finite(probs: torch.Tensor, where: str) -> None:
    import torch

    if not bool(torch.isfinite(probs).all()):
        raise TraceError(f"non-finite probabilities (NaN or inf) in {where}; try --dtype float32")


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from fact_locator import __version__

    return {"fact_locator": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
