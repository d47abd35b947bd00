"""Half precision (float16, bfloat16): the same engine and fast path; logits are cast to
float32 before the softmax, so effects come out in float32 and stay close to a float32
trace of the same weights with the same noise."""

from __future__ import annotations

import pytest
import torch
from tests.support.reference_check import SUBJECT_FIRST, SUBJECT_MIDDLE
from tests.support.tiny_models import tiny_model, tiny_tokenizer

from fact_locator.models.loading import from_objects, load_model
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer

# Measured on smollm2-135m, Colosseum, hidden kind, 2 samples (CPU): the largest |IE| gap to
# float32 was 0.025 in bfloat16 (8 significant bits) and 0.004 in float16 (11 bits), for
# IEs up to 0.81. The tolerances leave twice that.
HALF_TOL = {"bfloat16": 5e-2, "float16": 1e-2}


@pytest.fixture(scope="module")
def float32_trace() -> object:
    loaded = load_model("smollm2-135m", device="cpu", progress=False)
    return Tracer(loaded, TraceSettings(samples=2, kinds=("hidden",))).trace(SUBJECT_FIRST)


@pytest.mark.real_model
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_trace_is_close_to_float32(float32_trace: object, dtype: str) -> None:
    reference = float32_trace
    tracer = Tracer(load_model("smollm2-135m", device="cpu", dtype=dtype, progress=False), TraceSettings(samples=2, kinds=("hidden",), dtype=dtype))
    trace = tracer.trace(SUBJECT_FIRST, noise=reference.noise)

    assert tracer.uses_kv_suffix, tracer.suffix_fallback_reason  # the fast path, not the fallback
    assert trace.settings["dtype"] == dtype
    assert trace.p_clean == pytest.approx(reference.p_clean, abs=HALF_TOL[dtype])
    assert trace.p_corrupt == pytest.approx(reference.p_corrupt, abs=HALF_TOL[dtype])
    ours, theirs = torch.tensor(trace.ie["hidden"]), torch.tensor(reference.ie["hidden"])
    assert torch.isfinite(ours).all()
    assert (ours - theirs).abs().max().item() <= HALF_TOL[dtype]
    assert theirs.abs().max().item() > 10 * HALF_TOL[dtype]  # the effects are big enough to compare


def test_half_precision_logits_reach_the_softmax_in_float32() -> None:
    half = from_objects(tiny_model("llama", layers=2), tiny_tokenizer(), name="tiny-llama", dtype="bfloat16")
    tracer = Tracer(half, TraceSettings(samples=2, dtype="bfloat16"))
    assert next(half.model.parameters()).dtype == torch.bfloat16
    logits = tracer.engine.forward(torch.tensor([tracer.prepare(SUBJECT_MIDDLE).token_ids]))
    assert logits.dtype == torch.float32
