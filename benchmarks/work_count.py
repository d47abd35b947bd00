"""Exact work counts of a trace (FLOPs of the naive loop and of the engine, by forward size),
and the H100 time estimate printed where no GPU is at hand. Nothing here times anything."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from bench_facts import shipped_facts

from fact_locator.facts import Fact
from fact_locator.tracing.planning import restored_layers
from fact_locator.tracing.settings import KINDS

# Measured on an H100 in bfloat16 at GPT-2 XL's shape (benchmarks/README.md), only for the
# estimate printed without a GPU (`h100_seconds`): run 7 traced these subjects with "{} is
# located in the country of" in the tests' toy vocabulary (10-16 tokens) at the seconds a fact
# and the rate below; run 5's --ceilings timed the model alone (3180 rows) at the rates of
# `H100_MODEL_TFLOPS`, by positions run.
RUN7_SUBJECTS = ("The Colosseum", "The Parthenon", "The Big Ben", "Mount Fuji", "The Louvre", "The Kremlin", "Toyota", "The Alhambra")
H100_RUN7_SECONDS = 1.35
H100_TRACER_TFLOPS = 190
H100_MODEL_TFLOPS = ((1, 50.0), (7, 226.0), (15, 293.0))


def model_flops(model: Any) -> tuple[float, float]:
    """FLOPs (2 per multiply-add) of one decoder layer for one position (its matrix
    weights; attention scores are small at these lengths) and of the output head for one row."""
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))[0]
    matrices = sum(p.numel() for p in layer.parameters() if p.dim() == 2)
    head = model.get_output_embeddings().weight.numel()
    return 2.0 * matrices, 2.0 * head


def mlp_flops(model: Any) -> float:
    """FLOPs of one decoder layer's MLP for one position (its matrix weights)."""
    from fact_locator.models.adapters import adapter_for

    mlp = model.get_submodule(adapter_for(model).site_path("mlp", 0))
    return 2.0 * sum(p.numel() for p in mlp.parameters() if p.dim() == 2)


def work_flops(per_layer: float, lm_head: float, n_layers: int, n_tokens: int, start: int, samples: int, window: int,
               mlp: float | None = None, forks: bool = True) -> tuple[float, float]:
    """(naive, fast) FLOPs of one trace's restoration runs, 3 kinds. The naive loop runs the
    whole prompt through every layer, with logits at every position, for each of
    kinds x layers x tokens sites; the fast tracer runs, per site from the subject on,
    positions t.. from the site's first computed layer, and logits at the last position
    (its MLPs fewer positions, and the forks: `fast_flops_by_suffix`)."""
    naive = len(KINDS) * n_layers * n_tokens * samples * n_tokens * (n_layers * per_layer + lm_head)
    fast = fast_flops_by_suffix(per_layer, lm_head, n_layers, n_tokens, start, samples, window, mlp, forks)
    return naive, sum(fast.values())


def fast_flops_by_suffix(per_layer: float, lm_head: float, n_layers: int, n_tokens: int, start: int, samples: int,
                         window: int, mlp: float | None = None, forks: bool = True) -> dict[int, float]:
    """The fast tracer's FLOPs (3 kinds) by the number of positions its forwards run: T - t
    for the sites that restore token t. `mlp` (the MLP's part of `per_layer`) counts the
    MLP positions the tracer skips (`EngineOptions.partial_mlps`); None counts every layer at
    every position (as with that option off, and on the GPU runs before it existed).
    `forks`: windows clipped at layer 0 start at their end from the longest one's state
    (`SitePlan.forks`; every site of a token in one batch, as on a GPU); False: at layer 0
    (`EngineOptions.forks` off)."""
    windows = [restored_layers("mlp", layer, n_layers, window) for layer in range(n_layers)]
    longest_from_0 = max(w.stop for w in windows if w.start == 0)
    by_suffix = {}
    for token in range(start, n_tokens):
        positions = n_tokens - token
        flops = 0.0
        for layer in range(n_layers):
            for kind in KINDS:
                first = layer + 1 if kind == "hidden" else windows[layer].start
                restored = range(layer, layer + 1) if kind == "hidden" else windows[layer]
                if forks and kind != "hidden" and restored.start == 0 and restored.stop < longest_from_0:
                    first, restored = restored.stop, range(0)  # a fork restores nothing itself
                site = positions * (n_layers - first) * per_layer + lm_head
                if mlp is not None:
                    site -= mlp * sum(positions - mlp_positions(kind, first, restored, i, positions, n_layers) for i in range(first, n_layers))
                flops += samples * site
        by_suffix[positions] = flops
    return by_suffix


def mlp_positions(kind: str, first: int, restored: range, layer: int, positions: int, n_layers: int) -> int:
    """Positions at which a row of the site computes `layer`'s MLP (`Restorations._partial_mlps`):
    the last layer only at the last position, an MLP it restores not at the restored one,
    an mlp/attn site's first restored layer not after it (copied from the corrupted run)."""
    needed = {positions - 1} if layer == n_layers - 1 else set(range(positions))
    if kind == "mlp" and layer in restored:
        needed.discard(0)
    if kind != "hidden" and layer == first and first in restored:  # not a fork's first
        needed -= set(range(1, positions))
    return len(needed)


def shipped_work_ratios(loaded: Any, samples: int, window: int, target: float = 8.0) -> None:
    """The exact work ratio (naive FLOPs / fast FLOPs) of every shipped fact in `loaded`'s own
    tokens: what the reuses alone can give on realistic prompts, and the FLOP-rate advantage
    over the naive loop the fast tracer would need on top of it to reach `target`."""
    from statistics import median

    from fact_locator.tracing.prompt import prepare_prompt

    per_layer, lm_head = model_flops(loaded.model)
    mlp = mlp_flops(loaded.model)
    n_layers = loaded.model.config.num_hidden_layers
    rows = []
    for fact in shipped_facts():
        prompt = prepare_prompt(loaded.tokenizer, fact)
        rows.append((prompt.subject_range[0] == 0, *work_flops(per_layer, lm_head, n_layers, len(prompt.token_ids),
                                                              prompt.subject_range[0], samples, window, mlp)))
    print(f"\n# exact work ratio of the {len(rows)} shipped facts ({n_layers} layers, 3 kinds, {samples} samples, window {window})")
    for label, group in (("all", rows), ("subject first", [r for r in rows if r[0]]), ("tokens before the subject", [r for r in rows if not r[0]])):
        ratios = [naive / fast for _, naive, fast in group]
        overall = sum(naive for _, naive, _ in group) / sum(fast for _, _, fast in group)
        print(f"{label:>26}: {len(group):3d} facts, work ratio median {median(ratios):.2f} (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}), all together {overall:.2f}: {target:g}x needs {target / overall:.2f}x the naive loop's FLOP rate")


def fast_tracer_flops(config: Any, n_tokens: int, start: int, samples: int, window: int, current: bool = True) -> dict[int, float]:
    """FLOPs of the fast tracer's restoration runs for a GPT-2-like model (12 d^2 weights a
    layer, 8 d^2 of them the MLP's), by the positions its forwards run
    (`fast_flops_by_suffix`); not `current`: the tracer of the H100 runs, with the MLPs at
    every position and no forks."""
    d = config.n_embd
    return fast_flops_by_suffix(2 * 12 * d * d, 2 * d * config.vocab_size, config.n_layer, n_tokens, start, samples, window,
                                2 * 8 * d * d if current else None, forks=current)


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise linear through `points` (sorted by x), flat beyond the ends."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def h100_seconds(config: Any, prompts: Sequence[Any], samples: int, window: int, current: bool = True) -> float:
    """An estimate of the H100 time of tracing `prompts` (prepared), from measurements of
    other prompts: each forward's FLOPs at the rate the model alone reached with as many
    positions (`H100_MODEL_TFLOPS`, interpolated), scaled by how much slower than that the
    tracer was on run 7's prompts (1.35 s a fact, before the tracer skipped MLP positions
    and forked: run 7's work is counted as not `current`)."""
    def at_ceilings(shapes: Iterable[tuple[int, int]], now: bool = current) -> float:
        seconds = 0.0
        for n_tokens, start in shapes:
            for positions, flops in fast_tracer_flops(config, n_tokens, start, samples, window, now).items():
                seconds += flops / (_interpolate(H100_MODEL_TFLOPS, positions) * 1e12)
        return seconds

    from tests.support.tiny_models import tiny_tokenizer

    from fact_locator.tracing.prompt import prepare_prompt

    tiny = tiny_tokenizer()
    run7 = [prepare_prompt(tiny, Fact(subject, "{} is located in the country of", "Italy"), 1024) for subject in RUN7_SUBJECTS]
    slower = H100_RUN7_SECONDS * len(run7) / at_ceilings(((len(p.token_ids), p.subject_range[0]) for p in run7), now=False)
    return slower * at_ceilings((len(p.token_ids), p.subject_range[0]) for p in prompts)
