"""A/B timings of the engine's options (`EngineOptions`): each feature on and off, alternately on
one model and process, so that a machine whose speed drifts shows a change of a few percent."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from bench_timing import timed
from gpt2_tokenizer import GPT2_TOKENIZER_DIR

from fact_locator.facts import Fact
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer


def cache_ab(tracer: Tracer, facts: list[Fact], rounds: int = 2) -> None:
    """The restoration runs' KV cache both ways, alternately on one model: prefilled layers
    (the tracer's) against read-only ones, which copy the whole cache with torch.cat at
    every layer as transformers' DynamicLayer does (`EngineOptions.prefilled_cache`)."""
    options = tracer.options
    print("\n# KV cache of restoration runs: written into room vs torch.cat, alternately")
    try:
        for round_ in range(rounds):
            for name, prefilled in (("torch.cat", False), ("prefilled", True)):
                tracer.options = replace(options, prefilled_cache=prefilled)
                _, s = timed(lambda: tracer.trace_many(facts))
                print(f"round {round_ + 1} {name:9}: {s / len(facts):.2f} s per fact", flush=True)
    finally:
        tracer.options = options


# What `--compare-partial-mlps`, `--compare-forks`, `--compare-readout` and `--compare-gqa`
# switch off: a field of `EngineOptions` (with it off: every MLP position runs, no forks, new
# buffers for every batch's logits and softmax, transformers' own choice of copied key/value heads).
SWITCHES = {
    "partial MLPs": "partial_mlps",
    "forks": "forks",
    "reused readout buffers": "buffered_readout",
    "grouped-query attention": "cpu_gqa",
}


def batches_ab(tracer: Tracer, fact: Fact, feature: str, rounds: int = 3) -> tuple[float, float]:
    """The restoration batches of one trace with and without `feature` (a key of
    `SWITCHES`), batch by batch, alternating which goes first: on a VM whose speed drifts
    within minutes, whole traces timed one after the other cannot show a change of a few
    percent. Both run on the same corrupted run (`Tracer.restoration_batches`). Returns the
    seconds (with, without) over all rounds; the tracer's options are as before afterwards."""
    options = tracer.options
    switched = {True: replace(options, **{SWITCHES[feature]: True}), False: replace(options, **{SWITCHES[feature]: False})}
    batches = tracer.restoration_batches(fact)
    print(f"\n# {feature}, {fact.id}: {len(batches)} restoration batches, each with and without, alternately")
    seconds = {True: 0.0, False: 0.0}
    try:
        for round_ in range(rounds):
            for i, batch in enumerate(batches):
                for on in (True, False) if (i + round_) % 2 == 0 else (False, True):
                    tracer.options = switched[on]
                    _, s = timed(batch)
                    seconds[on] += s
            print(f"round {round_ + 1}: with {seconds[True]:.1f} s, without {seconds[False]:.1f} s "
                  f"({seconds[False] / seconds[True]:.3f}x)", flush=True)
    finally:
        tracer.options = options
    return seconds[True], seconds[False]


def gelu_ab(tracer: Tracer, facts: list[Fact], rounds: int = 2) -> None:
    """The model's "gelu_new" (8 element-wise kernels) against the one kernel the tracer runs
    in its place (`EngineOptions.fused_gelu`), alternately on one model; then how far apart
    the effects of the two are."""
    options = tracer.options
    print(f"\n# GELU's tanh form at {len(tracer.engine.gelu_sites)} MLPs: gelu_new's 8 kernels vs one, alternately")
    traces: dict[str, list[Any]] = {}
    seconds = {"gelu_new": 0.0, "one kernel": 0.0}
    try:
        for round_ in range(rounds):
            for name, fused in (("gelu_new", False), ("one kernel", True)):
                tracer.options = replace(options, fused_gelu=fused)
                traces[name], s = timed(lambda: tracer.trace_many(facts))
                seconds[name] += s
                print(f"round {round_ + 1} {name:10}: {s / len(facts):.2f} s per fact", flush=True)
    finally:
        tracer.options = options
    print(f"all rounds: gelu_new {seconds['gelu_new']:.1f} s, one kernel {seconds['one kernel']:.1f} s "
          f"({seconds['gelu_new'] / seconds['one kernel']:.2f}x)")
    gap = largest = 0.0
    for ours, theirs in zip(traces["one kernel"], traces["gelu_new"]):
        for kind in ours.ie:
            a, b = torch.tensor(ours.ie[kind]), torch.tensor(theirs.ie[kind])
            gap, largest = max(gap, (a - b).abs().max().item()), max(largest, b.abs().max().item())
    print(f"max |IE(one kernel) - IE(gelu_new)| {gap:.2g} (largest |IE| {largest:.3g})")


def gelu_comparison(device: str, dtype: str, facts: list[Fact], samples: int, window: int, rounds: int = 4) -> None:
    """`gelu_ab` on GPT-2 small's shape (12 layers, d=768, random weights), GPT-2's tokenizer."""
    from gpt2_tokenizer import gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from fact_locator.models.loading import from_objects

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # the config's defaults are GPT-2 small's
    loaded = from_objects(model, gpt2_tokenizer(GPT2_TOKENIZER_DIR), name="gpt2-small-shape", fingerprint="gpt2-small-shape-random",
                          device=device, dtype=dtype)
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window, dtype=dtype))
    tracer.trace(facts[0])  # warm-up
    print(f"\nGPT-2 small shape, {dtype}, {len(facts)} fact(s): {', '.join(f.id or f.subject for f in facts)}")
    gelu_ab(tracer, facts, rounds)
