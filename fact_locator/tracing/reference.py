"""The plain, obviously correct causal tracer: one forward of `samples` rows per
(kind, layer, token), hooks written out by hand. The engine must equal it to 1e-5.

It imports nothing of the engine it checks: the subject span, the target token, the noise
draws and the restored windows are written out here again, from the paper and ROME's
`experiments/causal_trace.py`, so that an error in the engine's versions shows up as a
difference instead of being shared by both sides."""

from __future__ import annotations

from typing import Any

import torch

from fact_locator.facts import Fact

__all__ = ["reference_noise", "reference_trace", "reference_window"]


def reference_noise(samples: int, n_subject_tokens: int, width: int, std: float, seed: int,
                    mode: str = "gaussian") -> torch.Tensor:
    """The documented draws: one CPU generator seeded with `seed`; draw i is the i-th
    (1, tokens, width) block it gives, standard normal times `std` (ROME's `noise * randn`),
    or uniform on [-sqrt(3) std, sqrt(3) std] (the same std) for `uniform`."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = []
    for _ in range(samples):
        if mode == "gaussian":
            rows.append(torch.randn((1, n_subject_tokens, width), generator=generator, dtype=torch.float32) * std)
        elif mode == "uniform":
            unit = torch.rand((1, n_subject_tokens, width), generator=generator, dtype=torch.float32) * 2 - 1
            rows.append(unit * (std * 3**0.5))
        else:
            raise ValueError(f"the reference has no noise mode {mode!r}")
    return torch.cat(rows) if rows else torch.zeros((0, n_subject_tokens, width))


def reference_window(kind: str, layer: int, n_layers: int, window: int) -> list[int]:
    """The layers restored for one site, as ROME's `trace_important_window` lists them:
    `range(max(0, layer - window // 2), min(num_layers, layer - (-window // 2)))` for mlp and
    attn; the hidden state (ROME's `trace_important_states`) restores its own layer only."""
    if kind == "hidden":
        return [layer]
    return list(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


def _main(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def reference_trace(
    loaded: Any, fact: Fact, kinds: tuple[str, ...], samples: int, noise_std: float, window: int, seed: int,
    metric: str = "prob", draws: torch.Tensor | None = None, noise_mode: str = "gaussian",
    target_metric: str = "first",
) -> dict[str, Any]:
    """`metric`: prob, logprob or logit_diff (against fact.distractor); `noise_mode`: gaussian
    or uniform draws of std `noise_std` (`reference_noise`); `draws` replaces them (e.g.
    symmetric-token-replacement deltas, one row per sample). `target_metric` full: every run
    is of the prompt followed by the target's tokens but the last, and measures
    sum_t log P(target token t | prompt + target[:t]) from the logits at positions
    n_prompt - 1 .. (prob: its exp); only the prompt's positions are restored."""
    model, adapter, tok = loaded.model, loaded.adapter, loaded.tokenizer
    prompt = fact.prompt
    enc = tok(prompt, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]], device=loaded.device)
    a, b = fact.subject_start, fact.subject_start + len(fact.subject)
    subj = [i for i, (x, y) in enumerate(enc["offset_mapping"]) if y > x and x < b and y > a]
    start, end = subj[0], subj[-1] + 1
    n_prompt, n_layers = ids.shape[1], adapter.num_layers(model)
    with_target = tok(prompt + " " + fact.target)["input_ids"]
    target_id = with_target[n_prompt]
    distractor_id = tok(prompt + " " + fact.distractor)["input_ids"][n_prompt] if fact.distractor else None
    # The whole target: the tokens after the prompt's in the tokenized prompt + target.
    target_ids = with_target[n_prompt:] if target_metric == "full" else [target_id]
    if len(target_ids) > 1:
        ids = torch.tensor([with_target[:-1]], device=loaded.device)
    n_tokens = ids.shape[1]
    read = len(target_ids)

    def measure(all_logits: torch.Tensor) -> torch.Tensor:
        """The metric of each row from the logits of every position (rows, tokens, vocab)."""
        if read > 1:
            total = torch.zeros(all_logits.shape[0], device=all_logits.device)
            for t, token_id in enumerate(target_ids):  # position n_prompt - 1 + t predicts target token t
                total = total + torch.log_softmax(all_logits[:, n_prompt - 1 + t].float(), -1)[:, token_id]
            if metric == "prob":
                return total.exp()
            if metric == "logprob":
                return total
            raise ValueError("the whole target has no logit_diff")
        logits = all_logits[:, -1].float()
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
        p_clean = measure(model(ids).logits)[0].item()
    for h in handles:
        h.remove()

    width = model.get_submodule(adapter.embed).weight.shape[1]
    noise = reference_noise(samples, end - start, width, noise_std, seed, noise_mode) if draws is None else draws
    noise = noise.to(device=loaded.device, dtype=model.get_submodule(adapter.embed).weight.dtype)
    samples = noise.shape[0]

    def run(kind: str | None, layers: list[int], token: int) -> float:
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
                logits = model(ids.repeat(samples, 1)).logits
            return measure(logits).mean().item()
        finally:
            for h in hs:
                h.remove()

    p_corrupt = run(None, [], 0)
    ie = {
        kind: [[run(kind, reference_window(kind, layer, n_layers, window), token) - p_corrupt for token in range(n_prompt)] for layer in range(n_layers)]
        for kind in kinds
    }
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "ie": ie, "subject_range": (start, end), "target_id": target_id,
            "target_ids": tuple(target_ids)}
