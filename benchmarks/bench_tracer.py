"""Naive loop (fact_locator/tracing/reference.py) vs. the fast tracer, side by side in one process.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py              # SmolLM2, 3 facts, naive + fast
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --quick      # fast only, plus the scaling runs
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --scaling    # time vs prompt length and layer count
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --count-flops  # FLOP count vs torch's FlopCounterMode
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --gemm         # the machine's float32 GEMM rate
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --work-ratios  # exact work ratio of the shipped facts (no trace)
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --shipped --facts 8  # naive + fast on shipped facts
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --together     # kinds / facts batched together vs apart
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-cache --only short-subject-first,12-subject-middle
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-gelu --only short-subject-first
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-partial-mlps --only short-subject-first
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-forks --only short-subject-first
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-readout --only short-subject-first
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --compare-gqa --only short-subject-first
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tracer.py --gpt2xl-shape --device cuda   # shipped facts, GPT-2's tokenizer

Prints seconds per fact, the ratio, max |IE difference| and peak memory.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny models of the tests (`tiny_models`)
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from fact_locator.facts import Fact  # noqa: E402
from fact_locator.tracing.batching import facts_together, sites_per_batch  # noqa: E402
from fact_locator.tracing.settings import KINDS, TraceSettings  # noqa: E402
from fact_locator.tracing.tracer import Tracer  # noqa: E402

# Where `gpt2_tokenizer.py` builds GPT-2's tokenizer (git-ignored; carried to the GPU machine).
GPT2_TOKENIZER_DIR = ROOT / "benchmarks" / ".gpt2-tokenizer"
# Measured on an H100 in bfloat16 at GPT-2 XL's shape (benchmarks/README.md), only for the
# estimate printed without a GPU (`h100_seconds`): run 7 traced these subjects with "{} is
# located in the country of" in the tests' toy vocabulary (10-16 tokens) in 1.35 s a fact, at
# 190 TFLOP/s; run 5's --ceilings timed the model alone (3180 rows) at 50, 226 and 293 TFLOP/s
# running 1, 7 and 15 positions.
RUN7_SUBJECTS = ("The Colosseum", "The Parthenon", "The Big Ben", "Mount Fuji", "The Louvre", "The Kremlin", "Toyota", "The Alhambra")
H100_RUN7_SECONDS = 1.35
H100_TRACER_TFLOPS = 190
H100_MODEL_TFLOPS = ((1, 50.0), (7, 226.0), (15, 293.0))

FACTS = [
    Fact("The Colosseum", "{} is located in the country of", "Italy", id="short-subject-first"),
    Fact("The Eiffel Tower", "{} is a famous landmark in the city of", "Paris", id="10-subject-first"),
    Fact("the Colosseum", "In Rome, {} is located in the country of", "Italy", id="12-subject-middle"),
    Fact("the Space Needle", "Every year many tourists visit {}, which is located in the city of", "Seattle", id="15-subject-middle"),
    Fact("Toyota", "According to the records we have, the company {} was founded in the country of", "Japan", id="long-subject-middle"),
]


def shipped_facts(n: int | None = None) -> list[Fact]:
    """The first `n` (None: all) facts of the fact sets in `factsets/`, taken from the sets in
    turn (so that a few facts already mix relations and prompt lengths)."""
    from itertools import chain, zip_longest

    from fact_locator.factset import load_factset

    sets = [load_factset(path).facts for path in sorted((ROOT / "factsets").glob("*.yaml"))]
    facts = [spec.fact for spec in chain.from_iterable(zip_longest(*sets)) if spec is not None]
    return facts if n is None else facts[:n]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_smollm2(device: str, dtype: str) -> Any:
    from fact_locator.models.loading import load_model

    return load_model("smollm2-135m", device=device, dtype=dtype, progress=False)


def timed(fn: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def compare(loaded: Any, facts: list[Fact], samples: int, window: int, naive: bool) -> None:
    from fact_locator.tracing.reference import reference_trace

    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window, dtype=loaded.identity.dtype))
    per_layer, lm_head = model_flops(loaded.model)
    mlp = mlp_flops(loaded.model)
    print(f"{'fact':22} {'tokens':>6} {'subject':>8} {'fast s':>8} {'naive s':>8} {'ratio':>6} {'work ratio':>10} "
          f"{'fast GFLOP/s':>12} {'naive GFLOP/s':>13} {'max|dIE|':>9} {'peak RSS MiB':>12}")
    total_fast = total_naive = 0.0
    for fact in facts:
        trace, fast_s = timed(lambda: tracer.trace(fact))
        n_layers, n_tokens, start = len(trace.ie["hidden"]), len(trace.tokens), trace.subject_range[0]
        naive_work, fast_work = work_flops(per_layer, lm_head, n_layers, n_tokens, start, samples, window, mlp)
        naive_s, diff = float("nan"), float("nan")
        if naive:
            ref, naive_s = timed(lambda: reference_trace(loaded, fact, KINDS, samples, trace.noise.std, window, 0))
            diff = max(abs(a - b) for k in KINDS for ra, rb in zip(trace.ie[k], ref["ie"][k]) for a, b in zip(ra, rb))
            total_naive += naive_s
        total_fast += fast_s
        print(
            f"{str(fact.id or fact.subject):22} {n_tokens:6d} {str(trace.subject_range):>8} {fast_s:8.2f} {naive_s:8.2f} "
            f"{naive_s / fast_s:6.1f} {naive_work / fast_work:10.1f} {fast_work / fast_s / 1e9:12.0f} "
            f"{naive_work / naive_s / 1e9:13.0f} {diff:9.1e} {peak_rss_mib():12.0f}",
            flush=True,
        )
    if naive:
        print(f"all facts: fast {total_fast:.1f} s, naive {total_naive:.1f} s, ratio {total_naive / total_fast:.1f}x")
    print(f"KV-suffix path: {tracer.uses_kv_suffix} {tracer.suffix_fallback_reason or ''}")
    if torch.cuda.is_available():
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def counted_flops(loaded: Any, fact: Fact, samples: int, window: int) -> None:
    """Check the FLOP count used for the estimates against torch's FlopCounterMode, which
    counts every matrix product and attention call the fast tracer really makes."""
    from torch.utils.flop_counter import FlopCounterMode

    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window))
    tracer.trace(fact)  # the probe and warm-up outside the count
    counter = FlopCounterMode(display=False)
    with counter:
        trace = tracer.trace(fact)
    per_layer, lm_head = model_flops(loaded.model)
    _, counted = work_flops(per_layer, lm_head, len(trace.ie["hidden"]), len(trace.tokens), trace.subject_range[0], samples, window,
                            mlp_flops(loaded.model))
    measured = counter.get_total_flops()
    print(f"\n# FLOPs of one trace ({fact.id}, {len(trace.tokens)} tokens): FlopCounterMode {measured / 1e12:.3f} TFLOP, "
          f"work_flops {counted / 1e12:.3f} TFLOP (ratio {measured / counted:.3f})")


def gemm_rates() -> None:
    """The machine's float32 matrix-product rate at SmolLM2's layer shapes: the ceiling for
    any exact tracer here."""
    print("\n# float32 matrix products (rows x 576 x 1536, then x 576), GFLOP/s")
    for rows in (100, 256, 1024, 4096):
        a, w1, w2 = torch.randn(rows, 576), torch.randn(1536, 576), torch.randn(576, 1536)
        product = lambda: torch.nn.functional.linear(torch.nn.functional.linear(a, w1), w2)  # noqa: E731
        for _ in range(3):
            product()
        _, s = timed(lambda: [product() for _ in range(20)])
        print(f"rows {rows:5d}: {20 * 2 * 2 * rows * 576 * 1536 / s / 1e9:5.0f} GFLOP/s", flush=True)


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
    from fact_locator.tracing.tracer import restored_layers

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


def prompt_length_scaling(loaded: Any, samples: int, window: int) -> None:
    """Subject first, relation made longer and longer."""
    print("\n# time vs prompt length (SmolLM2, fast tracer, subject first)")
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window))
    tail = " which is a place that many people from all over the world like to visit, in the country of"
    words = tail.split(" ")
    per_layer, lm_head = model_flops(loaded.model)
    mlp = mlp_flops(loaded.model)
    for n in (4, 8, 14, 20):
        fact = Fact("The Colosseum", "{}" + " ".join(words[: n + 1]), "Italy")
        trace, s = timed(lambda: tracer.trace(fact))
        naive, fast = work_flops(per_layer, lm_head, len(trace.ie["hidden"]), len(trace.tokens), 0, samples, window, mlp)
        print(f"tokens {len(trace.tokens):3d}: {s:6.2f} s, {fast / s / 1e9:4.0f} GFLOP/s, work ratio to naive {naive / fast:4.1f}", flush=True)


def layer_scaling(samples: int, window: int, naive_layers: int | None) -> None:
    """Random-weight Llama configs at SmolLM2's width with 8/16/32 layers."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from fact_locator.models.loading import from_objects

    print("\n# time vs layer count (random Llama, d=576, 10-token prompt, fast tracer)")
    tok = AutoTokenizer.from_pretrained(str(Path.home() / ".cache/fact-locator/models/smollm2-135m"))
    fact = FACTS[1]
    for layers in (8, 16, 32):
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
            num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        loaded = from_objects(LlamaForCausalLM(config).eval(), tok, name=f"llama-{layers}L")
        tracer = Tracer(loaded, TraceSettings(samples=samples, window=window))
        trace, s = timed(lambda: tracer.trace(fact))
        line = f"layers {layers:2d}: fast {s:6.2f} s"
        if naive_layers == layers:
            from fact_locator.tracing.reference import reference_trace

            _, n = timed(lambda: reference_trace(loaded, fact, KINDS, samples, trace.noise.std, window, 0))
            line += f", naive {n:6.2f} s, ratio {n / s:.1f}x"
        print(line, flush=True)


def gpt2xl_shape(device: str, dtype: str, n_facts: int | None, samples: int, window: int, config: Any = None, timing: bool | None = None,
                 profile: bool = False, activation: str | None = None, ceilings: bool = False, compare_cache: bool = False,
                 compare_gelu: bool = False, tokenizer: Any = None) -> None:
    """GPT-2 XL's shape (48 layers, d=1600, random weights): the first `n_facts` (None: all) of
    the shipped fact sets' facts (`shipped_facts`) x 3 kinds, tokenized by GPT-2's own
    tokenizer (`gpt2_tokenizer.py`; `tokenizer` replaces it, as the smoke test does),
    extrapolated to 1000 facts. Without a GPU (unless `timing`; `config` gives another shape)
    the fast tracer's FLOPs are counted and turned into estimates (`h100_seconds`). `profile` shows
    where the time of tracing 4 of the facts goes. `activation` replaces GPT-2's
    "gelu_new", which transformers runs as 8 element-wise kernels over the MLP's 4d-wide
    activations ("gelu_pytorch_tanh" is the same function in one kernel): how much of the
    time those kernels take. `ceilings` then times the model itself at the tracer's batch
    shapes (`model_ceilings`). `compare_cache` times the KV cache that writes into room after
    the prefix against transformers' torch.cat, alternately in this process; `compare_gelu`
    the tracer's one-kernel GELU against the model's own "gelu_new" (`gelu_ab`)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2_tokenizer import gpt2_tokenizer

    from fact_locator.tracing.prompt import prepare_prompt

    config = config or GPT2Config(n_layer=48, n_embd=1600, n_head=25, n_positions=1024, vocab_size=50257)
    if activation:
        config.activation_function = activation
    # The work of a trace grows with the square of the prompt's length, so the tokenizer
    # must be GPT-2's: the tests' 300-token toy vocabulary makes these prompts ~1.5x longer.
    tokenizer = tokenizer or gpt2_tokenizer(GPT2_TOKENIZER_DIR)
    facts = shipped_facts(n_facts)
    shapes = [prepare_prompt(tokenizer, f, 1024) for f in facts]
    flops = sum(sum(fast_tracer_flops(config, len(p.token_ids), p.subject_range[0], samples, window).values()) for p in shapes)
    lengths = [len(p.token_ids) for p in shapes]
    first = sum(1 for p in shapes if p.subject_range[0] == 0)
    print(f"\n# GPT-2 XL shape: {config.n_layer} layers, d={config.n_embd}, {config.activation_function}; {len(facts)} facts "
          f"of the shipped fact sets, prompts of {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f}), "
          f"{first} subject first")
    print(f"fast tracer FLOPs: {flops / len(facts) / 1e12:.1f} TFLOP per fact (3 kinds, {samples} samples, window {window}); "
          f"1000 facts: {flops / len(facts) * 1000 / 1e15:.1f} PFLOP")
    if not (device.startswith("cuda") if timing is None else timing):
        seconds = h100_seconds(config, shapes, samples, window) / len(facts)
        print(f"no GPU here, so estimates, not measurements: at the {H100_TRACER_TFLOPS} TFLOP/s the tracer reached on an H100 "
              f"(run 7, longer prompts) 1000 facts take {flops / len(facts) * 1000 / (H100_TRACER_TFLOPS * 1e12) / 60:.1f} min; "
              f"at the rates the model alone reached with as few positions (scaled to run 7) {seconds:.2f} s a fact, "
              f"{seconds * 1000 / 60:.1f} min")
        return
    from fact_locator.models.loading import from_objects

    torch.manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()  # per model, when one run times several
    with torch.device(device):  # initialise 1.5B random weights where they will run
        model = GPT2LMHeadModel(config).eval()
    # A fixed fingerprint: hashing 3 GB of random weights would only time the hash.
    loaded = from_objects(model, tokenizer, name="gpt2-xl-shape", fingerprint="gpt2-xl-shape-random", device=device, dtype=dtype)
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window, dtype=dtype))
    warm, s_warm = timed(lambda: tracer.trace(facts[0]))  # warm-up (CUDA kernels, the suffix probe)
    n_tokens = len(shapes[0].token_ids)
    print(f"warm-up trace {s_warm:.1f} s {({k: round(v, 2) for k, v in warm.timings.items()})}; KV-suffix path "
          f"{tracer.uses_kv_suffix} {tracer.suffix_fallback_reason or ''}; sites per batch at the last token "
          f"{sites_per_batch(tracer.loaded, tracer.settings, n_tokens, 1)}, at the first {sites_per_batch(tracer.loaded, tracer.settings, n_tokens, n_tokens)}; "
          f"facts together {facts_together(tracer.loaded, tracer.settings, n_tokens)}", flush=True)
    started = time.perf_counter()

    def done(i: int, _trace: Any) -> None:
        print(f"  fact {i} traced at {time.perf_counter() - started:.1f} s", flush=True)

    traces, s = timed(lambda: tracer.trace_many(facts, on_traced=done))
    print(f"{len(facts)} facts traced together in {s:.1f} s: {s / len(facts):.2f} s per fact; "
          f"1000 facts: {s / len(facts) * 1000 / 60:.1f} min; {flops / s / 1e12:.0f} TFLOP/s achieved "
          f"(facts_together {traces[0].timings['facts_together']:.0f})")
    few = facts[: max(1, len(facts) // 4)]
    _, alone = timed(lambda: [tracer.trace(f) for f in few])
    print(f"{len(few)} facts one at a time: {alone / len(few):.2f} s per fact ({alone / len(few) / (s / len(facts)):.1f}x slower)")
    if device.startswith("cuda"):
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if compare_cache:
        cache_ab(tracer, facts)
    if compare_gelu:
        gelu_ab(tracer, facts)
    if profile:
        kernel_profile(lambda: tracer.trace_many(facts[:4]), cuda=device.startswith("cuda"))
    if ceilings:
        model_ceilings(model, device, rows=min(5000, 10 * sites_per_batch(tracer.loaded, tracer.settings, n_tokens, n_tokens)), n_tokens=n_tokens)


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


def model_ceilings(model: Any, device: str, rows: int, n_tokens: int) -> None:
    """What the tracer's time can be measured against, at the shapes of its batches: the
    model's own forward (no hooks, no cache; `rows` rows of p positions, logits at the last
    one), the same on top of a KV cache of the other positions, one decoder layer eager and
    under torch.compile (how much fusing the element-wise kernels would give), and the bare
    matrix products of a layer. FLOPs count the weight matrices only, as the tracer's do."""
    from transformers import DynamicCache

    from fact_locator.tracing.kernels import attention_backends

    per_layer, lm_head = model_flops(model)
    layers = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))
    d = model.config.hidden_size
    dtype = next(model.parameters()).dtype
    # transformers renames past_key_values to `cache` (as the tracer knows).
    cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def best(fn: Any, repeat: int = 3) -> float:
        fn()  # warm-up: kernels, cuBLAS handles, compilation
        return min(timed(fn)[1] for _ in range(repeat))

    def line(label: str, seconds: float, flops: float, extra: str = "") -> None:
        print(f"{label:44s} {seconds * 1e3:8.2f} ms {flops / seconds / 1e12:6.1f} TFLOP/s{extra}", flush=True)

    print(f"\n# ceilings: the model alone at the tracer's shapes ({rows} rows, {dtype})")
    ids = torch.randint(0, model.config.vocab_size, (rows, n_tokens), device=device)
    with torch.inference_mode(), attention_backends(device):
        for positions in sorted({n_tokens, max(1, n_tokens // 2), 1}, reverse=True):
            flops = rows * (positions * len(layers) * per_layer + lm_head)
            line(f"model forward, {positions} positions, no cache",
                 best(lambda: model(input_ids=ids[:, -positions:], use_cache=False, logits_to_keep=1)), flops)
            if positions < n_tokens:
                prefix = DynamicCache()
                model(input_ids=ids[:, :-positions], use_cache=True, **{cache_kwarg: prefix})
                kv = [(layer.keys, layer.values) for layer in prefix.layers]

                def suffix() -> Any:
                    return model(input_ids=ids[:, -positions:], use_cache=True, logits_to_keep=1,
                                 **{cache_kwarg: DynamicCache(ddp_cache_data=kv)})

                line(f"model forward, {positions} positions, {n_tokens - positions} cached", best(suffix), flops)
        hidden = torch.randn(rows, n_tokens, d, device=device, dtype=dtype)
        block = layers[0]
        layer_flops = rows * n_tokens * per_layer
        line("one decoder layer, eager", best(lambda: block(hidden)), layer_flops)
        if device.startswith("cuda"):
            try:
                compiled = torch.compile(block)
                started = time.perf_counter()
                compiled(hidden)
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - started
                line("one decoder layer, torch.compile", best(lambda: compiled(hidden)), layer_flops, f" (compiled in {compile_s:.0f} s)")
            except Exception as exc:  # noqa: BLE001 - a ceiling, not a check: report and go on
                print(f"one decoder layer, torch.compile: failed ({type(exc).__name__}: {str(exc)[:200]})")
        # GPT-2's Conv1D keeps its weights as (in, out): x @ w.
        weights = [p for p in block.parameters() if p.dim() == 2]
        x = hidden.view(-1, d)
        wide = {n: torch.randn(x.shape[0], n, device=device, dtype=dtype) for n in {w.shape[0] for w in weights} - {d}}

        def products() -> None:
            for w in weights:
                (x if w.shape[0] == d else wide[w.shape[0]]) @ w

        line("the layer's matrix products alone", best(products), layer_flops)


def kernel_profile(run: Any, cuda: bool) -> None:
    """Where the time of `run` goes: busy time of the device (kernels) against wall time,
    which says whether the host keeps up, and the operators that take the most of it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        _, wall = timed(run)
    averages = prof.key_averages()
    # torch >= 2.4 says "device" where older versions said "cuda".
    names = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
    attribute = next((n for n in names if hasattr(averages[0], n)), names[-1])
    # On CUDA an operator's self device time is that of the kernels it launched, which are
    # listed as well: the busy time sums the kernels, the table names the operators.
    operators = [e for e in averages if e.device_type == DeviceType.CPU]
    kernels = [e for e in averages if e.device_type != DeviceType.CPU] if cuda else operators
    busy = sum(getattr(e, attribute) for e in kernels) / 1e6
    print(f"\n# profile: {wall:.2f} s wall, {busy:.2f} s {'device kernels' if cuda else 'CPU operators'} "
          f"({busy / wall:.0%} of wall)")
    for e in sorted(operators, key=lambda e: -getattr(e, attribute))[:15]:
        print(f"{getattr(e, attribute) / 1e6:8.3f} s {e.count:8d} calls  {e.key[:90]}")


def together(loaded: Any, facts: list[Fact], samples: int, window: int) -> None:
    """Batching side by side: the 3 kinds of a trace in shared forwards against one trace per
    kind (how restoration runs were batched before), and facts of one prompt shape traced
    together against one by one, with a batch size that lets them share."""
    print(f"\n# batching kinds and facts (SmolLM2, {samples} samples, window {window})")
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window))
    per_kind = {k: Tracer(loaded, TraceSettings(samples=samples, window=window, kinds=(k,))) for k in KINDS}
    for fact in facts:
        merged, s_merged = timed(lambda: tracer.trace(fact))
        split, s_split = timed(lambda: [per_kind[k].trace(fact, noise=merged.noise) for k in KINDS])
        gap = max(abs(a - b) for k, t in zip(KINDS, split) for ra, rb in zip(merged.ie[k], t.ie[k]) for a, b in zip(ra, rb))
        print(f"{fact.id:22} kinds together {s_merged:6.1f} s, one kind per trace {s_split:6.1f} s: "
              f"{s_split / s_merged:.2f}x (max |dIE| {gap:.1e})", flush=True)
    same = [Fact(s, "{} is located in the country of", "Italy") for s in ("The Colosseum", "The Parthenon")]
    shapes = {(len(p.token_ids), p.subject_range) for p in map(tracer.prepare, same)}
    if len(shapes) != 1:
        print(f"facts together: skipped, the two prompts tokenize to different shapes {shapes}")
        return
    noise = tracer.trace(same[0]).noise
    sites = 2 * len(KINDS) * loaded.n_layers  # the last token's sites of both facts in one batch
    wide = Tracer(loaded, TraceSettings(samples=samples, window=window, batch_size=sites))
    both, s_both = timed(lambda: wide.trace_many(same, noise=noise))
    _, s_each = timed(lambda: [wide.trace(f, noise=noise) for f in same])
    print(f"2 facts of one shape (batch size {sites} sites): together {s_both:6.1f} s, one by one {s_each:6.1f} s: "
          f"{s_each / s_both:.2f}x (facts_together {both[0].timings['facts_together']:.0f})", flush=True)


def together_overhead_bound(samples: int, window: int) -> None:
    """The same comparisons where each forward costs little compute and much fixed overhead
    (as on a GPU whose batches are not full): a tiny random Llama (4 layers, d=64) on the
    tiny tokenizer, 3 prompts of one shape traced together against one by one, and the
    3 kinds together against one kind per trace. Counts forwards too."""
    from tiny_models import tiny_loaded

    print(f"\n# batching on a tiny model (overhead-bound forwards), {samples} samples, window {window}")
    loaded = tiny_loaded("llama", layers=4)
    facts = [Fact(s, "{} is located in the country of", "Italy") for s in ("The Colosseum", "The Parthenon", "The Big Ben")]
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window))
    per_kind = {k: Tracer(loaded, TraceSettings(samples=samples, window=window, kinds=(k,))) for k in KINDS}
    noise = tracer.trace(facts[0]).noise
    for t in per_kind.values():
        t.trace(facts[0], noise=noise)  # warm-up and probe
    calls: list[int] = []
    handle = loaded.model.register_forward_pre_hook(lambda *_args: calls.append(1))
    try:
        rows = []
        for name, fn in (("together", lambda: tracer.trace_many(facts, noise=noise)),
                         ("one fact at a time", lambda: [tracer.trace(f, noise=noise) for f in facts]),
                         ("one kind per trace", lambda: [per_kind[k].trace(f, noise=noise) for f in facts for k in KINDS])):
            calls.clear()
            best = min(timed(fn)[1] for _ in range(3))
            rows.append((name, best, len(calls) // 3))
    finally:
        handle.remove()
    for name, s, forwards in rows:
        print(f"{name:20} {s:6.3f} s ({forwards} forwards): {s / rows[0][1]:.2f}x the time of together", flush=True)


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

    from tiny_models import tiny_tokenizer

    from fact_locator.tracing.prompt import prepare_prompt

    tiny = tiny_tokenizer()
    run7 = [prepare_prompt(tiny, Fact(subject, "{} is located in the country of", "Italy"), 1024) for subject in RUN7_SUBJECTS]
    slower = H100_RUN7_SECONDS * len(run7) / at_ceilings(((len(p.token_ids), p.subject_range[0]) for p in run7), now=False)
    return slower * at_ceilings((len(p.token_ids), p.subject_range[0]) for p in prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--facts", type=int, default=None,
                        help="how many of the benchmark facts (max 5, default 3); with --shipped, of the shipped fact sets' "
                             "(default 8); with --gpt2xl-shape, of the shipped fact sets' (default all)")
    parser.add_argument("--shipped", action="store_true",
                        help="naive and fast on the first --facts facts of the shipped fact sets (SmolLM2's tokens)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="fast tracer only (no naive loop)")
    parser.add_argument("--scaling", action="store_true", help="only the prompt-length and layer-count runs")
    parser.add_argument("--gpt2xl-shape", action="store_true")
    parser.add_argument("--count-flops", action="store_true", help="check the FLOP count against torch's FlopCounterMode")
    parser.add_argument("--gemm", action="store_true", help="only the machine's float32 matrix-product rate")
    parser.add_argument("--together", action="store_true", help="only kinds and facts batched together vs apart")
    parser.add_argument("--work-ratios", action="store_true", help="only the shipped facts' exact work ratios (no trace)")
    parser.add_argument("--compare-cache", action="store_true", help="only the KV cache written into room vs torch.cat")
    parser.add_argument("--compare-partial-mlps", action="store_true",
                        help="only the restoration batches with and without the partial MLPs, alternately (--only picks facts)")
    parser.add_argument("--compare-forks", action="store_true",
                        help="only the restoration batches with and without forks, alternately (--only picks facts)")
    parser.add_argument("--compare-readout", action="store_true",
                        help="only the restoration batches with the readout's buffers reused and made anew, alternately")
    parser.add_argument("--compare-gqa", action="store_true",
                        help="only the restoration batches with SDPA's enable_gqa and with copied key/value heads, alternately")
    parser.add_argument("--compare-gelu", action="store_true", help="only GPT-2's gelu_new vs the tracer's one-kernel GELU (GPT-2 small shape)")
    parser.add_argument("--only", default=None, help="comma-separated fact ids to run (default: the first --facts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}; device {args.device}, {args.dtype}")
    if args.gemm:
        gemm_rates()
        return
    if args.gpt2xl_shape:
        gpt2xl_shape(args.device, args.dtype, args.facts, args.samples, args.window)
        return
    if args.shipped:
        facts = shipped_facts(args.facts or 8)
    elif args.only:
        facts = [f for f in FACTS if f.id in args.only.split(",")]
    else:
        facts = FACTS[: args.facts or 3]
    if args.compare_gelu:
        gelu_comparison(args.device, args.dtype, facts, args.samples, args.window)
        return
    loaded = load_smollm2(args.device, args.dtype)
    if args.work_ratios:
        shipped_work_ratios(loaded, args.samples, args.window)
        return
    if args.count_flops:
        counted_flops(loaded, FACTS[0], args.samples, args.window)
        return
    if args.compare_cache:
        tracer = Tracer(loaded, TraceSettings(samples=args.samples, window=args.window))
        tracer.trace(FACTS[0])  # warm-up
        for fact in facts:
            print(f"\n{fact.id}:", end="")
            cache_ab(tracer, [fact])
        return
    switched = {"partial MLPs": args.compare_partial_mlps, "forks": args.compare_forks, "reused readout buffers": args.compare_readout,
                "grouped-query attention": args.compare_gqa}
    if any(switched.values()):
        tracer = Tracer(loaded, TraceSettings(samples=args.samples, window=args.window))
        for fact in facts:
            for feature in (feature for feature, on in switched.items() if on):
                batches_ab(tracer, fact, feature)
        return
    if args.together:
        together_overhead_bound(args.samples, args.window)
        together(loaded, facts, args.samples, args.window)
        return
    if not args.scaling:
        print(f"\n# SmolLM2-135M, 3 kinds, {args.samples} samples, window {args.window}")
        compare(loaded, facts, args.samples, args.window, naive=not args.quick)
    if args.quick or args.scaling:
        prompt_length_scaling(loaded, args.samples, args.window)
        layer_scaling(args.samples, args.window, naive_layers=8 if args.scaling else None)


if __name__ == "__main__":
    main()
