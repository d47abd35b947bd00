"""Severed paths (the paper's Figure 3): restore the hidden state at a site while the MLP
(or attention) outputs of the later layers at that token stay at their corrupted values.

The gap between the plain hidden-state effect and the severed one is the part of the
effect that flows through the severed modules. Effects are in the tracer's metric (P(o) as
in ROME, log P(o) or the logit difference), like the trace's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.errors import UsageError
from fact_locator.facts import Fact
from fact_locator.tracing.clean_run import clean_run
from fact_locator.tracing.corruption import noise_draws
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.metrics import check_first_target, check_metric, metric_values
from fact_locator.tracing.trace import NoiseInfo, SeveredPaths

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.prompt import PreparedPrompt
    from fact_locator.tracing.tracer import Tracer

__all__ = ["SEVERABLE", "SeveredTrace", "severed_trace"]

SEVERABLE = ("mlp", "attn")


@dataclass(frozen=True)
class SeveredTrace:
    """`ie["hidden"]` is the plain hidden-state IE; `ie["mlp"]` the same with the later MLPs
    severed (held corrupted) at the restored token, `ie["attn"]` likewise for attention.
    `p_corrupt` is the corrupted run's value and every IE a difference from it, in `metric`."""

    fact_id: str | None
    tokens: tuple[str, ...]
    subject_range: tuple[int, int]
    p_corrupt: float
    ie: dict[str, tuple[tuple[float, ...], ...]]
    metric: str = "prob"

    def share_through(self, severed: str, token: int) -> float:
        """Fraction of the hidden-state effect at `token` (at its peak layer) that goes
        through the severed modules: 1 - severed IE / plain IE."""
        column = [row[token] for row in self.ie["hidden"]]
        layer = max(range(len(column)), key=column.__getitem__)
        plain = column[layer]
        if plain <= 0:
            return 0.0
        return 1.0 - self.ie[severed][layer][token] / plain

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_last_subject(self) -> SeveredPaths:
        """The curves and shares at the last subject token, as a trace stores them."""
        token = self.subject_range[1] - 1
        curves = {kind: tuple(row[token] for row in grid) for kind, grid in self.ie.items()}
        layer = max(range(len(curves["hidden"])), key=curves["hidden"].__getitem__)
        return SeveredPaths(token=token, peak_layer=layer, peak_ie=curves["hidden"][layer],
                            shares={kind: self.share_through(kind, token) for kind in self.ie if kind != "hidden"},
                            curves=curves, token_text=self.tokens[token], p_corrupt=self.p_corrupt)


def severed_trace(
    tracer: Tracer, fact: Fact, sever: tuple[str, ...] = SEVERABLE, noise: NoiseInfo | None = None,
    tokens: str = "all",
) -> SeveredTrace:
    """Plain and severed hidden-state effects for every layer, at every token from the subject
    on (`tokens="all"`) or only at the last subject token (`"last_subject"`, the paper's
    Figure 3 and a few times cheaper); cells not run stay 0."""
    import torch

    loaded, settings = tracer.loaded, tracer.settings
    model, adapter, n_layers = loaded.model, loaded.adapter, loaded.n_layers
    prepared = tracer.prepare(fact)
    n_tokens, samples = len(prepared.token_ids), settings.samples
    start, end = prepared.subject_range
    ids = torch.tensor([prepared.token_ids], device=loaded.device)

    def capture(store: dict[Any, torch.Tensor], key: Any) -> Callable[[torch.Tensor], None]:
        def edit(t: torch.Tensor) -> None:
            store[key] = t.detach().reshape(-1, n_tokens, t.shape[-1]).clone()

        return edit

    if tokens not in ("all", "last_subject"):
        raise UsageError(f"severed paths: tokens must be 'all' or 'last_subject', got {tokens!r}")
    check_metric(settings.metric, prepared)
    check_first_target(settings.target_metric, prepared, "severed paths")
    clean = clean_run(tracer.engine, prepared, ("hidden",))
    draws, noise = noise_draws(settings, prepared, clean.embeddings, tracer.noise_or_model(noise), "severed paths are")
    draws = draws.to(device=loaded.device, dtype=clean.embeddings.dtype)

    def add_noise(rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def edit(t: torch.Tensor) -> torch.Tensor:
            view = t.view(rows, n_tokens, t.shape[-1])
            view[:, start:end] += draws.repeat(rows // samples, 1, 1)
            return t

        return edit

    # The corrupted run's module outputs, per noise sample: what severed modules are held at.
    corrupted: dict[Any, torch.Tensor] = {}
    with torch.inference_mode(), edit_outputs(model, {adapter.embed: add_noise(samples)} | {
        adapter.site_path(kind, l): capture(corrupted, (kind, l)) for kind in sever for l in range(n_layers)
    }):
        p_corrupt = float(_measure(model, ids.expand(samples, n_tokens), settings.metric, prepared).mean().item())

    ie: dict[str, tuple[tuple[float, ...], ...]] = {}
    for mode in ("hidden", *sever):
        grid = [[0.0] * n_tokens for _ in range(n_layers)]
        for token in (range(start, n_tokens) if tokens == "all" else [end - 1]):
            rows = n_layers * samples  # one group of samples per restored layer
            edits: dict[str, Callable[[torch.Tensor], Any]] = {adapter.embed: add_noise(rows)}
            for layer in range(n_layers):
                edits[adapter.site_path("hidden", layer)] = _set_rows(
                    slice(layer * samples, (layer + 1) * samples), token, n_tokens, clean.states[("hidden", layer)][token])
                if mode != "hidden" and layer > 0:
                    # Layer `layer`'s module stays corrupted in every group restored below it.
                    held = slice(0, layer * samples)
                    edits[adapter.site_path(mode, layer)] = _set_rows(
                        held, token, n_tokens, corrupted[(mode, layer)][:, token].repeat(layer, 1))
            with torch.inference_mode(), edit_outputs(model, edits):
                values = _measure(model, ids.expand(rows, n_tokens), settings.metric, prepared)
            for layer, p in enumerate(values.view(n_layers, samples).mean(dim=1).tolist()):
                grid[layer][token] = p - p_corrupt
        ie[mode] = tuple(tuple(row) for row in grid)
    return SeveredTrace(fact.id, prepared.tokens, prepared.subject_range, p_corrupt, ie, settings.metric)


def _set_rows(rows: slice, token: int, n_tokens: int, value: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(t: torch.Tensor) -> torch.Tensor:
        view = t.view(-1, n_tokens, t.shape[-1])
        view[rows, token] = value.to(view.dtype)
        return t

    return edit


def _measure(model: Any, input_ids: torch.Tensor, metric: str, prepared: PreparedPrompt) -> torch.Tensor:
    """The metric of each row at the last position (float32 logits, as the engine's)."""
    logits = model(input_ids=input_ids, use_cache=False).logits[:, -1, :].float()
    return metric_values(metric, logits, prepared)
