"""The plain, obviously correct causal tracer: one forward of `samples` rows per
(kind, layer, token), hooks written out by hand. The engine must equal it to 1e-5."""

from __future__ import annotations

from typing import Any

import torch

from fact_locator.facts import Fact
from fact_locator.tracing.corruption import make_noise
from fact_locator.tracing.tracer import restored_layers


def _main(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def reference_trace(
    loaded: Any, fact: Fact, kinds: tuple[str, ...], samples: int, noise_std: float, window: int, seed: int,
    metric: str = "prob", draws: torch.Tensor | None = None,
) -> dict[str, Any]:
    """`metric`: prob, logprob or logit_diff (against fact.distractor); `draws` replaces the
    Gaussian noise (e.g. symmetric-token-replacement deltas, one row per sample)."""
    model, adapter, tok = loaded.model, loaded.adapter, loaded.tokenizer
    prompt = fact.prompt
    enc = tok(prompt, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]], device=loaded.device)
    a, b = fact.subject_start, fact.subject_start + len(fact.subject)
    subj = [i for i, (x, y) in enumerate(enc["offset_mapping"]) if y > x and x < b and y > a]
    start, end = subj[0], subj[-1] + 1
    n_tokens, n_layers = ids.shape[1], adapter.num_layers(model)
    target_id = tok(prompt + " " + fact.target)["input_ids"][n_tokens]
    distractor_id = tok(prompt + " " + fact.distractor)["input_ids"][n_tokens] if fact.distractor else None

    def measure(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if metric == "prob":
            return torch.softmax(logits, -1)[:, target_id]
        if metric == "logprob":
            return torch.log_softmax(logits, -1)[:, target_id]
        return logits[:, target_id] - logits[:, distractor_id]

    # Clean run: record every site output.
    clean: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for kind in kinds:
        for layer in range(n_layers):
            def rec(_m, _i, out, key=(kind, layer)):
                clean[key] = _main(out).detach().clone().reshape(1, n_tokens, -1)
            handles.append(model.get_submodule(adapter.site_path(kind, layer)).register_forward_hook(rec))
    with torch.no_grad():
        p_clean = measure(model(ids).logits[:, -1])[0].item()
    for h in handles:
        h.remove()

    width = model.get_submodule(adapter.embed).weight.shape[1]
    noise = make_noise(samples, end - start, width, noise_std, seed) if draws is None else draws
    noise = noise.to(device=loaded.device, dtype=model.get_submodule(adapter.embed).weight.dtype)
    samples = noise.shape[0]

    def run(kind: str | None, layers: range, token: int) -> float:
        hs = []

        def add_noise(_m, _i, out):
            out = out.clone()
            out[:, start:end] += noise
            return out

        hs.append(model.get_submodule(adapter.embed).register_forward_hook(add_noise))
        if kind is not None:
            for layer in layers:
                def restore(_m, _i, out, layer=layer):
                    h = _main(out)
                    h3 = h.reshape(samples, n_tokens, -1).clone()
                    h3[:, token] = clean[(kind, layer)][0, token]
                    new = h3.reshape(h.shape)
                    return (new, *out[1:]) if isinstance(out, tuple) else new
                hs.append(model.get_submodule(adapter.site_path(kind, layer)).register_forward_hook(restore))
        try:
            with torch.no_grad():
                logits = model(ids.repeat(samples, 1)).logits[:, -1]
            return measure(logits).mean().item()
        finally:
            for h in hs:
                h.remove()

    p_corrupt = run(None, range(0), 0)
    ie = {
        kind: [[run(kind, restored_layers(kind, layer, n_layers, window), token) - p_corrupt for token in range(n_tokens)] for layer in range(n_layers)]
        for kind in kinds
    }
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "ie": ie, "subject_range": (start, end), "target_id": target_id}
