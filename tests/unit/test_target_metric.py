"""`target_metric: full`: the whole target's teacher-forced log-probability (the prompt with the
target's tokens but the last appended, sum over the target's tokens of log P(token | prompt and
the tokens before it); metric prob is its exp). The fast engine equals the reference loop, which
computes it on its own; only the prompt's positions are restored."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from tests.support.reference_check import SUBJECT_FIRST, SUBJECT_MIDDLE, TOL
from tests.support.tiny_models import tiny_loaded

from fact_locator.errors import UsageError
from fact_locator.facts import Fact
from fact_locator.settings import SettingValueError, setting
from fact_locator.trace_key import trace_key
from fact_locator.tracing.attribution import attribution_patch
from fact_locator.tracing.engine import EngineOptions
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.severed import severed_trace
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.tracer import Tracer


def likeliest_two_words(loaded: Any, fact: Fact) -> Fact:
    """The fact with a two-word target of corpus words, each the likeliest after what comes
    before it (the whole target teacher-forced): a target of several tokens whose whole
    probability is large enough for effects to show."""
    from fact_locator.tracing.clean_run import clean_run
    from tests.support.tiny_models import CORPUS

    words = sorted({w for line in CORPUS for w in line.split()})
    tracer = Tracer(loaded, TraceSettings(samples=1, target_metric="full"))

    def whole(target: str) -> float:
        return clean_run(tracer.engine, tracer.prepare_traced(replace(fact, target=target))).prob

    with torch.inference_mode():
        first = max(words, key=whole)
        return replace(fact, target=max((f"{first} {w}" for w in words), key=whole))


def assert_full_equals_reference(loaded: Any, fact: Fact, metric: str, options: EngineOptions | None = None) -> Trace:
    tracer = Tracer(loaded, TraceSettings(samples=3, window=2, metric=metric, target_metric="full"), options)
    trace = tracer.trace(fact)
    ref = reference_trace(loaded, fact, KINDS, 3, trace.noise.std, 2, 0, metric=metric, target_metric="full")
    assert len(ref["target_ids"]) >= 2, "the test needs a target of several tokens"
    # Relative to the values' size: a whole target's probability is small (a product), a sum
    # of log-probabilities large, and each carries float32 rounding of its terms.
    scale = max(abs(ref["p_clean"]), abs(ref["p_corrupt"]))
    tol = TOL * (scale if metric == "prob" else max(1.0, scale))
    assert trace.clean_value == pytest.approx(ref["p_clean"], abs=tol)
    assert trace.corrupt_value == pytest.approx(ref["p_corrupt"], abs=tol)
    for kind in KINDS:
        ours, theirs = torch.tensor(trace.ie[kind]), torch.tensor(ref["ie"][kind])
        assert ours.shape == theirs.shape
        diff = (ours - theirs).abs().max().item()
        assert diff <= tol, f"{kind}: max |IE - reference| = {diff:.3g}"
    return trace


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("metric", ["prob", "logprob"])
@pytest.mark.parametrize("kv_suffix", [True, False], ids=["kv-suffix", "whole-prompt"])
def test_whole_target_equals_the_reference_loop(arch: str, metric: str, kv_suffix: bool) -> None:
    loaded = tiny_loaded(arch)
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    trace = assert_full_equals_reference(loaded, fact, metric, EngineOptions(kv_suffix=kv_suffix))
    assert trace.target_metric == "full"
    # Effects are visible: the comparison is not one of zeros.
    largest = max(abs(v) for row in trace.ie["hidden"] for v in row)
    assert largest > (0.01 * trace.p_clean if metric == "prob" else 1e-3)


@pytest.mark.parametrize("option", ["forks", "partial_mlps", "buffered_readout", "prefilled_cache"])
def test_whole_target_equals_the_reference_with_each_engine_option_off(option: str) -> None:
    loaded = tiny_loaded("llama")
    assert_full_equals_reference(loaded, likeliest_two_words(loaded, SUBJECT_MIDDLE), "logprob", EngineOptions(**{option: False}))


def test_whole_target_of_facts_traced_together_equals_each_alone() -> None:
    loaded = tiny_loaded("gpt2")
    first = likeliest_two_words(loaded, SUBJECT_FIRST)
    # The same prompt shape and target length: both facts share restoration forwards.
    second = replace(first, subject="The Colosseum", target=first.target)
    third = replace(first, relation="{} is located in the city of")
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full", metric="logprob"))
    together = tracer.trace_many([first, third])
    for fact, trace in zip([first, third], together):
        alone = tracer.trace(fact)
        for kind in KINDS:
            assert torch.allclose(torch.tensor(trace.ie[kind]), torch.tensor(alone.ie[kind]), atol=1e-4)
    assert second.target == first.target


def test_p_clean_is_the_whole_targets_probability() -> None:
    loaded = tiny_loaded("gpt2")
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    full = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full")).trace(fact)
    first = Tracer(loaded, TraceSettings(samples=2, window=2)).trace(fact)
    # Teacher forcing multiplies in the later tokens' probabilities (each < 1).
    assert full.p_clean < first.p_clean
    assert full.clean_value == pytest.approx(full.p_clean)


def test_only_the_prompts_positions_are_restored_and_reported() -> None:
    loaded = tiny_loaded("llama")
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    full = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full")).trace(fact)
    first = Tracer(loaded, TraceSettings(samples=2, window=2)).trace(fact)
    assert full.tokens == first.tokens and full.token_ids == first.token_ids
    assert len(full.ie["mlp"][0]) == len(first.tokens)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("metric", ["prob", "logprob"])
def test_a_one_token_target_gives_the_same_trace_under_first_and_full(arch: str, metric: str) -> None:
    loaded = tiny_loaded(arch)
    fact = replace(SUBJECT_FIRST, target="the")
    assert len(Tracer(loaded).prepare(fact).target_ids) == 1
    first = Tracer(loaded, TraceSettings(samples=3, window=2, metric=metric)).trace(fact)
    full = Tracer(loaded, TraceSettings(samples=3, window=2, metric=metric, target_metric="full")).trace(fact)
    assert (full.p_clean, full.p_corrupt, full.clean_value, full.ie) == (first.p_clean, first.p_corrupt, first.clean_value, first.ie)
    assert (first.target_metric, full.target_metric) == ("first", "full")


def test_the_trace_records_target_metric_and_old_traces_load_as_first() -> None:
    loaded = tiny_loaded("gpt2")
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    trace = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full")).trace(fact)
    data = trace.to_dict()
    assert data["target_metric"] == "full" and data["settings"]["target_metric"] == "full"
    assert Trace.from_dict(data).target_metric == "full"
    old = {k: v for k, v in data.items() if k != "target_metric"}
    assert Trace.from_dict(old).target_metric == "first"


def test_an_old_first_token_trace_extends_under_the_first_target_metric() -> None:
    loaded = tiny_loaded("gpt2")
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2))
    trace = tracer.trace(SUBJECT_FIRST)
    old = trace.to_dict()
    del old["target_metric"], old["settings"]["target_metric"]  # written before the setting
    extended = tracer.extend(Trace.from_dict(old), SUBJECT_FIRST, 3)
    assert extended.n_samples == 3


def test_a_full_trace_extends_to_a_fresh_trace_of_as_many_draws() -> None:
    loaded = tiny_loaded("llama")
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full", metric="logprob"))
    extended = tracer.extend(tracer.trace(fact), fact, 4)
    fresh = Tracer(loaded, TraceSettings(samples=4, window=2, target_metric="full", metric="logprob")).trace(fact)
    for kind in KINDS:
        assert torch.allclose(torch.tensor(extended.ie[kind]), torch.tensor(fresh.ie[kind]), atol=1e-4)


def test_the_cache_key_tells_first_from_full() -> None:
    loaded = tiny_loaded("gpt2")
    tracer = Tracer(loaded, TraceSettings(samples=2))
    noise = tracer.model_noise()
    first = trace_key(loaded, SUBJECT_FIRST, TraceSettings(samples=2), noise, "exact")
    full = trace_key(loaded, SUBJECT_FIRST, TraceSettings(samples=2, target_metric="full"), noise, "exact")
    assert first != full


def test_setting_errors_are_one_line() -> None:
    with pytest.raises(UsageError, match="unknown target_metric 'all': choose one of first, full"):
        TraceSettings(target_metric="all")
    with pytest.raises(UsageError, match="target_metric full .* logit_diff"):
        TraceSettings(target_metric="full", metric="logit_diff")
    parse = setting("target-metric").parse
    assert parse("full") == "full"
    with pytest.raises(SettingValueError, match="unknown target metric 'whole': choose one of first, full"):
        parse("whole")


def test_a_fact_sets_target_metric_is_checked_with_its_file_and_line(tmp_path: Any) -> None:
    from fact_locator.errors import FactSetError
    from fact_locator.factset import load_factset

    facts = "facts:\n  - subject: The Colosseum\n    relation: \"{} is located in the country of\"\n    target: Italy\n"
    good = tmp_path / "good.yaml"
    good.write_text("settings:\n  target_metric: full\n" + facts)
    assert load_factset(good).settings["target_metric"] == "full"
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings:\n  target_metric: whole\n" + facts)
    with pytest.raises(FactSetError, match=r"bad.yaml:2: settings.target_metric: unknown target_metric 'whole'"):
        load_factset(bad)


def test_severed_paths_and_attribution_patching_refuse_a_several_token_full_target() -> None:
    loaded = tiny_loaded("gpt2")
    fact = likeliest_two_words(loaded, SUBJECT_FIRST)
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2, target_metric="full"))
    with pytest.raises(UsageError, match="severed paths read the target's first token only; target_metric full"):
        severed_trace(tracer, fact, tokens="last_subject")
    with pytest.raises(UsageError, match="attribution patching read the target's first token only"):
        attribution_patch(tracer, fact)
