"""The fast tracer held to the plain reference loop: the facts whose subject comes first, in
the middle and last, and the check that a trace equals the reference trace to 1e-5 (used by
the equivalence tests, the real-model tests and benchmarks/gpu_check.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from fact_locator.facts import Fact
from fact_locator.tracing.clean_run import clean_run
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.tracer import Tracer

TOL = 1e-5

SUBJECT_FIRST = Fact("The Colosseum", "{} is located in the country of", "Italy")
SUBJECT_MIDDLE = Fact("the Eiffel Tower", "In Paris, {} is located in the city of", "Paris")
SUBJECT_LAST = Fact("Dante Alighieri", "The mother tongue of {}", "Italian")


def likeliest_target(loaded: Any, fact: Fact) -> Fact:
    """The fact with the corpus word the (random) model finds likeliest as its target, so
    that probabilities, and with them the IEs, are large enough to compare."""
    from tests.support.tiny_models import CORPUS

    words = sorted({w for line in CORPUS for w in line.split()})
    tracer = Tracer(loaded, TraceSettings(samples=1))
    with torch.inference_mode():
        best = max(words, key=lambda w: clean_run(tracer.engine, tracer.prepare(replace(fact, target=w))).prob)
    return replace(fact, target=best)


def assert_equal_to_reference(loaded: Any, fact: Fact, samples: int = 3, window: int = 2, batch_size: int | None = None) -> float:
    """Trace with the engine and the reference; return the largest |IE| seen."""
    if loaded.identity.name.startswith("tiny-"):
        fact = likeliest_target(loaded, fact)
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=window, batch_size=batch_size))
    trace = tracer.trace(fact)
    ref = reference_trace(loaded, fact, KINDS, samples, trace.noise.std, window, 0)
    assert trace.subject_range == ref["subject_range"]
    assert trace.p_clean == pytest.approx(ref["p_clean"], abs=TOL)
    assert trace.p_corrupt == pytest.approx(ref["p_corrupt"], abs=TOL)
    largest = 0.0
    for kind in KINDS:
        ours, theirs = torch.tensor(trace.ie[kind]), torch.tensor(ref["ie"][kind])
        assert ours.shape == theirs.shape
        diff = (ours - theirs).abs().max().item()
        assert diff <= TOL, f"{kind}: max |IE - reference| = {diff:.3g}"
        largest = max(largest, theirs.abs().max().item())
    return largest
