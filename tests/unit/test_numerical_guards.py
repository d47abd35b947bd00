"""NaN or inf in a trace fails it, naming the first layer where it appeared."""

import pytest
import torch

from fact_locator.errors import TraceError
from fact_locator.facts import Fact
from fact_locator.tracing import tracer as tracer_module
from fact_locator.tracing.nonfinite import all_finite, check_finite
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import tiny_loaded

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_broken_weights_name_the_layer(arch):
    loaded = tiny_loaded(arch, layers=4)
    mlp = loaded.model.get_submodule(loaded.adapter.site_path("mlp", 2))
    with torch.no_grad():
        next(mlp.parameters()).fill_(float("nan"))
    with pytest.raises(TraceError) as info:
        Tracer(loaded, TraceSettings(kinds="hidden", samples=2)).trace(FACT)
    message = str(info.value)
    assert "non-finite logits (NaN or inf) in the clean run" in message
    assert f"first appears in the output of layer 2 ({loaded.adapter.layer_path(2)})" in message


def test_healthy_weights_trace_without_complaint():
    trace = Tracer(tiny_loaded("llama"), TraceSettings(kinds="hidden", samples=2)).trace(FACT)
    assert all(v == v for row in trace.ie["hidden"] for v in row)  # no NaN


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_a_single_non_finite_logit_fails_the_run(bad):
    tracer = Tracer(tiny_loaded("llama", layers=2), TraceSettings(kinds="hidden", samples=2))
    logits = torch.zeros(3, 50)
    logits[1, 7] = bad
    with pytest.raises(TraceError, match="non-finite logits"):
        check_finite(tracer.engine, logits, "a restoration run (hidden)", tracer.prepare(FACT))


def test_huge_but_finite_logits_pass_even_when_their_sum_overflows():
    tracer = Tracer(tiny_loaded("llama", layers=2), TraceSettings(kinds="hidden", samples=2))
    logits = torch.full((3, 50), 3e38)
    assert not torch.isfinite(logits.sum(dim=-1)).all()
    check_finite(tracer.engine, logits, "a restoration run (hidden)", tracer.prepare(FACT))  # no error


def test_nan_that_appears_only_in_a_restoration_run_fails_the_trace(monkeypatch):
    """Restoration runs are checked after all their batches are queued (the host does not
    wait for the GPU after each one), and still fail the trace."""
    tracer = Tracer(tiny_loaded("llama", layers=2), TraceSettings(kinds="hidden", samples=2))
    clean_run = tracer_module.clean_run

    def clean_with_a_bad_state(engine, prepared, kinds=(), measure=False):
        clean = clean_run(engine, prepared, kinds, measure)
        if ("hidden", 0) in clean.states:  # only what restorations write back
            clean.states[("hidden", 0)][-1] = float("nan")
        return clean

    monkeypatch.setattr(tracer_module, "clean_run", clean_with_a_bad_state)
    with pytest.raises(TraceError, match=r"non-finite logits \(NaN or inf\) in a restoration run \(hidden\)"):
        tracer.trace(FACT)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_the_deferred_check_sees_any_non_finite_logit(bad):
    logits = torch.zeros(3, 50)
    assert bool(all_finite(logits))
    logits[2, 49] = bad
    assert not bool(all_finite(logits))
    assert bool(all_finite(torch.full((3, 50), 3e38)))  # huge but finite
