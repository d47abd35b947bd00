"""The GPT-2 XL-shape benchmark (48 layers, d = 1600, random weights) on the shipped facts,
tokenized by GPT-2's own tokenizer: timed on a GPU, estimated from exact work counts
elsewhere; and the ceilings its time is measured against (the model alone at the tracer's
batch shapes)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import torch
from bench_facts import shipped_facts
from bench_timing import kernel_profile, timed
from gpt2_tokenizer import GPT2_TOKENIZER_DIR
from option_ab import cache_ab, gelu_ab
from work_count import H100_TRACER_TFLOPS, fast_tracer_flops, h100_seconds, model_flops

from fact_locator.tracing.batching import facts_together, sites_per_batch
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer


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
