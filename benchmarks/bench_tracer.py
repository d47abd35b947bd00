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

Prints seconds per fact, the ratio, max |IE difference| and peak memory. The parts live beside
it: the facts (`bench_facts.py`), timing (`bench_timing.py`), exact work counts and the H100
estimate (`work_count.py`), the engine options on and off (`option_ab.py`) and the GPT-2
XL-shape run (`gpt2xl_shape.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tiny models of the tests (`tests.support.tiny_models`)

import torch  # noqa: E402
from bench_facts import FACTS, shipped_facts  # noqa: E402
from bench_timing import cpu_name, peak_rss_mib, timed  # noqa: E402
from gpt2xl_shape import gpt2xl_shape  # noqa: E402
from option_ab import batches_ab, cache_ab, gelu_comparison  # noqa: E402
from work_count import mlp_flops, model_flops, shipped_work_ratios, work_flops  # noqa: E402

from fact_locator.facts import Fact  # noqa: E402
from fact_locator.tracing.settings import KINDS, TraceSettings  # noqa: E402
from fact_locator.tracing.tracer import Tracer  # noqa: E402


def load_smollm2(device: str, dtype: str) -> Any:
    from fact_locator.models.loading import load_model

    return load_model("smollm2-135m", device=device, dtype=dtype, progress=False)


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
    from fact_locator.models.model_cache import ensure_builtin

    print("\n# time vs layer count (random Llama, d=576, 10-token prompt, fast tracer)")
    tok = AutoTokenizer.from_pretrained(str(ensure_builtin("smollm2-135m")))  # SmolLM2's vocabulary, wherever the cache is
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
    from tests.support.tiny_models import tiny_loaded

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
