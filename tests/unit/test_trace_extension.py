"""Extending a trace with more noise draws: only the new draws run, and the result equals a
fresh trace of as many draws with the same seed, and the reference loop on those draws.
This rests on noise draw i depending on the seed and i only."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from tests.support.reference_check import SUBJECT_FIRST, SUBJECT_LAST, SUBJECT_MIDDLE, TOL, likeliest_target
from tests.support.tiny_models import tiny_loaded

from fact_locator.errors import UsageError
from fact_locator.facts import Fact
from fact_locator.tracing import tracer as tracer_module
from fact_locator.tracing.corruption import make_noise
from fact_locator.tracing.engine import EngineOptions
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.restoration import Restorations
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.tracer import Tracer

EXACT = 1e-6


@pytest.fixture(scope="module")
def llama() -> Any:
    return tiny_loaded("llama", layers=4)


def assert_same_trace(extended: Trace, fresh: Trace) -> None:
    """Equal to EXACT relative to the metric's size: a log-probability of a few units, computed
    in float32 in batches of another composition, differs from the fresh one by a few of its ulps."""
    assert extended.n_samples == fresh.n_samples
    assert extended.settings == fresh.settings
    logs = [abs(math.log(p)) for p in (fresh.p_clean, fresh.p_corrupt) if p > 0] if fresh.settings.get("metric") == "logprob" else []
    tol = EXACT * max([1.0, *logs])
    assert extended.p_corrupt == pytest.approx(fresh.p_corrupt, abs=tol)
    assert extended.te == pytest.approx(fresh.te, abs=tol)
    for kind in fresh.kinds:
        assert np.abs(np.array(extended.ie[kind]) - np.array(fresh.ie[kind])).max() <= tol, kind
        assert np.abs(extended.ie_samples(kind) - fresh.ie_samples(kind)).max() <= tol, kind
    assert np.abs(extended.te_samples() - fresh.te_samples()).max() <= tol


# -- the noise -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["gaussian", "uniform"])
@pytest.mark.parametrize(("tokens", "width"), [(1, 64), (3, 64), (1, 8), (2, 12), (3, 5)])
def test_draw_i_does_not_depend_on_how_many_are_drawn(mode: str, tokens: int, width: int) -> None:
    assert torch.equal(make_noise(10, tokens, width, 0.5, 7, mode), make_noise(16, tokens, width, 0.5, 7, mode)[:10])


@pytest.mark.parametrize(("tokens", "width"), [(1, 64), (3, 64), (2, 576)])
def test_draws_are_those_of_one_block_draw_where_a_sample_has_a_multiple_of_16_values(tokens: int, width: int) -> None:
    """So traces of such models (all the shipped and tiny ones) keep their numbers."""
    block = torch.randn((10, tokens, width), generator=torch.Generator().manual_seed(3)) * 0.5
    assert torch.equal(make_noise(10, tokens, width, 0.5, 3), block)


# -- extending -------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["prob", "logprob"])
@pytest.mark.parametrize("kv_suffix", [True, False], ids=["kv-suffix", "whole-prompts"])
def test_an_extended_trace_equals_a_fresh_one(llama: Any, metric: str, kv_suffix: bool) -> None:
    fact = likeliest_target(llama, SUBJECT_MIDDLE)
    settings = TraceSettings(samples=5, window=2, metric=metric)
    options = EngineOptions(kv_suffix=kv_suffix)
    small = Tracer(llama, settings, options).trace(fact)
    extended = Tracer(llama, settings, options).extend(small, fact, 12)
    fresh = Tracer(llama, replace(settings, samples=12), options).trace(fact)
    assert_same_trace(extended, fresh)
    # The first draws are the small trace's, untouched.
    assert np.array_equal(extended.ie_samples("mlp")[..., :5], small.ie_samples("mlp"))


def test_an_extended_trace_equals_the_reference_loop_on_the_same_draws(llama: Any) -> None:
    fact = likeliest_target(llama, SUBJECT_FIRST)
    tracer = Tracer(llama, TraceSettings(samples=3, window=2))
    extended = tracer.extend(tracer.trace(fact), fact, 8)
    ref = reference_trace(llama, fact, KINDS, 8, extended.noise.std, 2, 0)
    assert extended.p_corrupt == pytest.approx(ref["p_corrupt"], abs=TOL)
    largest = 0.0
    for kind in KINDS:
        theirs = np.array(ref["ie"][kind])
        assert np.abs(np.array(extended.ie[kind]) - theirs).max() <= TOL, kind
        largest = max(largest, float(np.abs(theirs).max()))
    assert largest > 1e-4, "every IE is ~0: the comparison would say nothing"


def test_only_the_new_draws_run(llama: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = Tracer(llama, TraceSettings(samples=4, window=2))
    small = tracer.trace(SUBJECT_MIDDLE)
    corrupted_rows: list[int] = []
    restored_rows: list[int] = []
    corrupted_run, restore = tracer_module.corrupted_run, Restorations.restore

    def counting_corrupted_run(engine: Any, prepared: Any, draws: torch.Tensor, keep: bool) -> Any:
        corrupted_rows.append(draws.shape[0])
        return corrupted_run(engine, prepared, draws, keep)

    def counting_restore(self: Restorations, *args: Any, **kwargs: Any) -> torch.Tensor:
        values = restore(self, *args, **kwargs)
        restored_rows.append(values.shape[1])
        return values

    monkeypatch.setattr(tracer_module, "corrupted_run", counting_corrupted_run)
    monkeypatch.setattr(Restorations, "restore", counting_restore)
    tracer.extend(small, SUBJECT_MIDDLE, 10)
    assert corrupted_rows == [6]
    assert restored_rows and set(restored_rows) == {6}


def test_extend_many_batches_facts_with_different_draws_so_far(llama: Any) -> None:
    facts = [SUBJECT_FIRST, replace(SUBJECT_FIRST, subject="The Louvre"), SUBJECT_LAST]
    starts = [3, 5, 2]
    small = [Tracer(llama, TraceSettings(samples=n, window=2)).trace(fact) for fact, n in zip(facts, starts)]
    seen: list[int] = []
    extended = Tracer(llama, TraceSettings(samples=3, window=2)).extend_many(
        list(zip(facts, small)), 7, on_traced=lambda i, _trace: seen.append(i))
    fresh = Tracer(llama, TraceSettings(samples=7, window=2)).trace_many(facts)
    for ours, theirs in zip(extended, fresh):
        assert_same_trace(ours, theirs)
    assert sorted(seen) == [0, 1, 2]


def test_a_trace_with_enough_draws_comes_back_as_it_is(llama: Any) -> None:
    tracer = Tracer(llama, TraceSettings(samples=4, window=2))
    trace = tracer.trace(SUBJECT_MIDDLE)
    assert tracer.extend(trace, SUBJECT_MIDDLE, 4) == trace


def test_symmetric_token_replacement_extends_while_subjects_last(llama: Any) -> None:
    """It has as many draws as same-length replacement subjects: past them nothing is added."""
    # Three of these tokenize to Rome's four tokens (Berlin, Dante, Tokyo); Paris and London do not.
    fact = Fact("Rome", "{} is located in the country of", "Italy", replacements=("Berlin", "Paris", "Dante", "London", "Tokyo"))
    settings = TraceSettings(samples=1, window=2, corruption="str")
    small = Tracer(llama, settings).trace(fact)
    available = Tracer(llama, replace(settings, samples=10)).trace(fact)
    assert available.n_samples == 3
    extended = Tracer(llama, settings).extend(small, fact, 10)
    assert_same_trace(extended, available)
    assert Tracer(llama, settings).extend(extended, fact, 12).sample_effects == extended.sample_effects


@pytest.mark.parametrize(("change", "message"), [
    (dict(window=3), "made with window = 2, this tracer uses 3"),
    (dict(seed=1), "made with seed = 0, this tracer uses 1"),
])
def test_a_trace_of_other_settings_is_refused(llama: Any, change: dict[str, Any], message: str) -> None:
    trace = Tracer(llama, TraceSettings(samples=2, window=2)).trace(SUBJECT_MIDDLE)
    with pytest.raises(UsageError, match=message):
        Tracer(llama, TraceSettings(**({"samples": 2, "window": 2} | change))).extend(trace, SUBJECT_MIDDLE, 4)


def test_what_cannot_be_extended_says_why_in_one_line(llama: Any) -> None:
    tracer = Tracer(llama, TraceSettings(samples=3, window=2))
    trace = tracer.trace(SUBJECT_MIDDLE)
    with pytest.raises(UsageError, match="no per-sample effects.*trace it afresh"):
        tracer.extend(replace(trace, sample_effects=None), SUBJECT_MIDDLE, 6)
    with pytest.raises(UsageError, match="cannot extend a trace of 3 samples to 2"):
        tracer.extend(trace, SUBJECT_MIDDLE, 2)
    with pytest.raises(UsageError, match="the trace is of another fact"):
        tracer.extend(trace, SUBJECT_FIRST, 6)
