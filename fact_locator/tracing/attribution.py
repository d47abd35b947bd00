"""Attribution patching (AtP, Kramar et al. 2024): every indirect effect estimated from one
clean forward, one corrupted forward and one backward pass.

IE(site) ~ (clean activation - corrupted activation) . d P(o) / d activation, taken at the
corrupted run and averaged over the noise samples; a window of layers sums its layers'
estimates. It is a first-order approximation: a fast screen for large fact sets, never
ground truth. Traces it makes say so in `settings["method"]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fact_locator.facts import Fact
from fact_locator.tracing.clean_run import clean_run
from fact_locator.tracing.corruption import noise_draws
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.metrics import check_first_target, check_metric, metric_values
from fact_locator.tracing.trace import NoiseInfo, Trace
from fact_locator.tracing.tracer import Tracer, prompt_fields, restored_layers

__all__ = ["ATP_METHOD", "attribution_patch"]

ATP_METHOD = "atp (approximate: gradient attribution patching)"


def attribution_patch(tracer: Tracer, fact: Fact, noise: NoiseInfo | None = None) -> Trace:
    """An approximate Trace of `fact` with the tracer's model and settings."""
    import torch

    started = time.perf_counter()
    loaded, settings = tracer.loaded, tracer.settings
    model, adapter, n_layers = loaded.model, loaded.adapter, loaded.n_layers
    prepared = tracer.prepare(fact)
    check_first_target(settings.target_metric, prepared, "attribution patching")
    n_tokens = len(prepared.token_ids)
    start, end = prepared.subject_range
    ids = torch.tensor([prepared.token_ids], device=loaded.device)
    paths = {(kind, layer): adapter.site_path(kind, layer) for kind in settings.kinds for layer in range(n_layers)}

    clean = clean_run(tracer.engine, prepared, settings.kinds)
    draws, noise = noise_draws(settings, prepared, clean.embeddings, tracer.noise_or_model(noise), "attribution patching is")
    check_metric(settings.metric, prepared)
    draws = draws.to(device=loaded.device, dtype=clean.embeddings.dtype)

    corrupted: dict[tuple[str, int], torch.Tensor] = {}
    rows = settings.samples

    def corrupt(t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        out[:, start:end] += draws
        return out.requires_grad_(True)  # the graph starts here; weights need no gradient

    def keep(key: tuple[str, int]) -> Callable[[torch.Tensor], None]:
        def edit(t: torch.Tensor) -> None:
            t.retain_grad()
            corrupted[key] = t

        return edit

    requires = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad(), edit_outputs(model, {adapter.embed: corrupt} | {p: keep(k) for k, p in paths.items()}):
            logits = model(input_ids=ids.expand(rows, n_tokens), use_cache=False).logits[:, -1, :].float()
            values = metric_values(settings.metric, logits, prepared)
            values.sum().backward()  # each row then holds d metric_row / d its own activations
            probs = torch.softmax(logits.detach(), dim=-1)[:, prepared.target_id]
        ie = {}
        with torch.no_grad():
            per_layer = {
                key: ((clean.states[key] - adapter.as_tokens(key[0], t.detach(), n_tokens))
                      * adapter.as_tokens(key[0], t.grad, n_tokens)).sum(-1).mean(0)
                for key, t in corrupted.items()
            }
            for kind in settings.kinds:
                grid = []
                for layer in range(n_layers):
                    window = restored_layers(kind, layer, n_layers, settings.window)
                    row = sum(per_layer[(kind, l)] for l in window)
                    grid.append(tuple(float(v) for v in row.tolist()))
                ie[kind] = tuple(grid)
    finally:
        for p, flag in zip(model.parameters(), requires):
            p.requires_grad_(flag)
    return Trace(
        **prompt_fields(loaded, prepared),
        top_token=loaded.tokenizer.decode([clean.top_id]),
        p_clean=clean.prob,
        p_corrupt=float(probs.mean().item()),
        ie=ie,
        settings=settings.to_dict() | {"device": loaded.device, "method": ATP_METHOD},
        noise=noise,
        timings={"total": time.perf_counter() - started},
        metric=settings.metric,
        clean_value=float(metric_values(settings.metric, clean.logits, prepared)[0].item()),
        corrupt_value=float(values.detach().mean().item()),
    )
