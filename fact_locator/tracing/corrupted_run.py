"""The corrupted run of a fact (its `samples` noisy forwards of the whole prompt), and what
the fact's restoration runs start from (`FactRun`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.hooks import edit_outputs, main_tensor
from fact_locator.tracing.metrics import metric_values, target_probabilities
from fact_locator.tracing.nonfinite import check_finite
from fact_locator.tracing.planning import Shape, prompt_shape
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

    from fact_locator.models.loading import LoadedModel
    from fact_locator.tracing.engine import Engine

__all__ = ["CorruptedRun", "FactRun", "corrupted_run", "noise_adder"]


@dataclass
class CorruptedRun:
    prob: float  # P*(o), averaged over the samples
    value: float  # the metric, averaged over the samples
    # Per sample (samples,), float32 on the model's device: what the trace keeps of each draw.
    probs: torch.Tensor
    values: torch.Tensor
    # Kept only for the KV-suffix path: per decoder layer, its main output (samples, tokens, d),
    # the rest of its output tuple (None when it returns a bare tensor), and its keys/values.
    outputs: list[torch.Tensor]
    output_rest: list[tuple[Any, ...] | None]
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    mlp_outputs: list[torch.Tensor]  # per layer, the MLP site's output (samples, tokens, d)


@dataclass
class FactRun:
    """What one fact's restoration runs start from: its prompt, the clean states they
    restore, its corruption draws (samples, subject tokens, d) and its corrupted run."""

    prepared: PreparedPrompt
    states: dict[tuple[str, int], torch.Tensor]
    draws: torch.Tensor
    corrupted: CorruptedRun

    @property
    def shape(self) -> Shape:
        """Facts batch together when their restoration runs have the same shape: token
        count, subject span and rows per site."""
        return (*prompt_shape(self.prepared), self.draws.shape[0])


def corrupted_run(engine: Engine, prepared: PreparedPrompt, draws: torch.Tensor, keep: bool) -> CorruptedRun:
    """The `samples` noisy runs of the whole prompt (one per row of `draws`); with `keep`,
    also every decoder layer's output and the KV cache, which the suffix runs start from."""
    import torch
    from transformers import DynamicCache

    loaded = engine.loaded
    samples, n_tokens = draws.shape[0], len(prepared.token_ids)
    outputs: list[torch.Tensor] = []
    rests: list[tuple[Any, ...] | None] = []
    mlp_outputs: list[torch.Tensor] = []
    handles = []
    if keep:
        for layer in range(loaded.n_layers):
            module = loaded.model.get_submodule(loaded.adapter.layer_path(layer))
            handles.append(module.register_forward_hook(_output_keeper(outputs, rests)))
            mlp = loaded.model.get_submodule(loaded.adapter.site_path("mlp", layer))
            handles.append(mlp.register_forward_hook(_output_keeper(mlp_outputs, tokens=_mlp_view(loaded, n_tokens))))
    # A cache without the config: plain full-length layers (no sliding-window trimming),
    # so every prefix length can be cut from it exactly.
    cache = DynamicCache() if keep else None
    input_ids = torch.tensor([prepared.token_ids], device=loaded.device).expand(samples, n_tokens)
    edits = {loaded.adapter.embed: noise_adder(draws, prepared.subject_range, n_tokens, offset=0)}
    try:
        with edit_outputs(loaded.model, edits):
            logits = engine.forward(input_ids, cache, positions=prepared.read_positions)
    finally:
        for handle in handles:
            handle.remove()
    check_finite(engine, logits, "the corrupted run", prepared)
    probs = target_probabilities(logits, prepared)
    values = metric_values(engine.settings.metric, logits, prepared)
    keys_values = [(layer.keys, layer.values) for layer in cache.layers] if cache is not None else []
    return CorruptedRun(
        prob=float(probs.mean().item()), value=float(values.mean().item()), probs=probs, values=values,
        outputs=outputs, output_rest=rests, keys_values=keys_values, mlp_outputs=mlp_outputs,
    )


def noise_adder(draws: torch.Tensor, subject_range: tuple[int, int], n_tokens: int, offset: int) -> Callable[[torch.Tensor], torch.Tensor]:
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


def _output_keeper(outputs: list[Any], rests: list[Any] | None = None,
                   tokens: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[..., None]:
    """A forward hook keeping a copy of each main output (viewed through `tokens` when
    given) and, into `rests`, the rest of its tuple."""
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        main = main_tensor(output)
        outputs.append((main if tokens is None else tokens(main)).detach().clone())
        if rests is not None:
            rests.append(tuple(output[1:]) if isinstance(output, tuple) else None)

    return hook


def _mlp_view(loaded: LoadedModel, n_tokens: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """An MLP site's output as (samples, tokens, d), however the architecture lays it out."""
    return lambda t: loaded.adapter.as_tokens("mlp", t, n_tokens)
