"""Corruption modes (Gaussian, uniform, symmetric token replacement) and metrics (probability,
log probability, logit difference): each equals the plain reference loop on the same corruption."""

import numpy as np
import pytest
import torch

from fact_locator.errors import FactError, UsageError
from fact_locator.facts import Fact
from fact_locator.tracing.reference import reference_noise, reference_trace
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import tiny_loaded

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy", distractor="Paris")


def assert_equal_to_reference(trace, ref, kinds):
    assert trace.clean_value == pytest.approx(ref["p_clean"], abs=1e-5)
    assert trace.corrupt_value == pytest.approx(ref["p_corrupt"], abs=1e-5)
    for kind in kinds:
        assert np.abs(np.array(trace.ie[kind]) - np.array(ref["ie"][kind])).max() < 1e-5
        assert np.abs(np.array(trace.ie[kind])).max() > 1e-4  # the comparison means something


@pytest.mark.parametrize("metric", ["logprob", "logit_diff"])
def test_other_metrics_equal_the_reference(metric):
    loaded = tiny_loaded("llama")
    trace = Tracer(loaded, TraceSettings(kinds="hidden,mlp", samples=3, window=2, metric=metric)).trace(FACT)
    ref = reference_trace(loaded, FACT, ("hidden", "mlp"), 3, trace.noise.std, 2, 0, metric=metric)
    assert trace.metric == metric and trace.settings["metric"] == metric
    assert trace.te == pytest.approx(trace.clean_value - trace.corrupt_value)
    assert 0 <= trace.p_clean <= 1 and 0 <= trace.p_corrupt <= 1  # probabilities are still recorded
    assert_equal_to_reference(trace, ref, ("hidden", "mlp"))


def test_logit_difference_needs_a_distractor():
    tracer = Tracer(tiny_loaded("llama"), TraceSettings(samples=2, metric="logit_diff"))
    with pytest.raises(FactError, match="needs a distractor"):
        tracer.trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))


def test_uniform_noise_equals_the_reference_with_the_same_draws():
    loaded = tiny_loaded("gpt2")
    trace = Tracer(loaded, TraceSettings(kinds="hidden", samples=3, window=2, corruption="uniform")).trace(FACT)
    s, e = trace.subject_range
    draws = reference_noise(3, e - s, 64, trace.noise.std, 0, "uniform")
    assert draws.std().item() == pytest.approx(trace.noise.std, rel=0.2)  # matched scale
    ref = reference_trace(loaded, FACT, ("hidden",), 3, trace.noise.std, 2, 0, noise_mode="uniform")
    assert_equal_to_reference(trace, ref, ("hidden",))


def test_symmetric_token_replacement_swaps_in_subjects_of_the_same_length():
    loaded = tiny_loaded("qwen2")
    tok = loaded.tokenizer
    fact = Fact("Mount Fuji", "{} is located in the country of", "Japan",
                replacements=("Mount Rome", "The Space Needle", "Toyota", "Mount Para", "Mount Fuji"))
    trace = Tracer(loaded, TraceSettings(kinds="hidden,attn", samples=5, window=2, corruption="str")).trace(fact)
    s, e = trace.subject_range
    used = [r for r in fact.replacements if len(tok(fact.relation.replace("{}", r))["input_ids"]) == len(trace.tokens)]
    assert used == ["Mount Rome", "Mount Para", "Mount Fuji"]  # same token length; the subject itself is skipped
    assert trace.noise.calibration == "symmetric token replacement with 2 subject(s): Mount Rome, Mount Para"
    # The reference gets the corruption as explicit embedding differences.
    embed = loaded.model.get_submodule(loaded.adapter.embed)
    with torch.no_grad():
        base = embed(torch.tensor([trace.token_ids]))[0, s:e]
        deltas = torch.stack([embed(torch.tensor([tok(fact.relation.replace("{}", r))["input_ids"]]))[0, s:e] - base
                              for r in trace.noise.calibration.split(": ", 1)[1].split(", ")])
    ref = reference_trace(loaded, fact, ("hidden", "attn"), len(deltas), 0, 2, 0, draws=deltas)
    assert_equal_to_reference(trace, ref, ("hidden", "attn"))


def test_str_without_a_fitting_replacement_says_so():
    tracer = Tracer(tiny_loaded("llama"), TraceSettings(samples=2, corruption="str"))
    with pytest.raises(FactError, match="symmetric token replacement needs another subject"):
        tracer.trace(Fact("Toyota", "{} was founded in", "Japan", replacements=("The Eiffel Tower",)))


def test_unknown_modes_are_usage_errors():
    with pytest.raises(UsageError, match="unknown corruption 'blur'"):
        TraceSettings(corruption="blur")
    with pytest.raises(UsageError, match="unknown metric 'rank'"):
        TraceSettings(metric="rank")


def test_every_corruption_setting_has_one_registered_mode():
    """The settings table parses the names (without torch); the registry says what each does."""
    from fact_locator.settings import CORRUPTIONS
    from fact_locator.tracing.corruption import CORRUPTION_MODES, NOISE_MODES, make_noise

    assert tuple(CORRUPTION_MODES) == CORRUPTIONS
    assert NOISE_MODES == ("gaussian", "uniform")
    with pytest.raises(ValueError, match="unknown noise mode 'str'"):
        make_noise(2, 1, 4, 1.0, 0, "str")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3_text"])
def test_the_calibrated_noise_is_three_times_the_std_of_the_subject_embeddings(arch):
    """Computed by hand from the embedding matrix: the rows of the subject's tokens, scaled
    as the embedding module scales them (Gemma: sqrt(d)), std over all their numbers with
    Bessel's correction (torch's and ROME's `.std()`), times 3."""
    from fact_locator.tracing.clean_run import clean_run
    from fact_locator.tracing.corruption import noise_for

    loaded = tiny_loaded(arch)
    tracer = Tracer(loaded, TraceSettings(samples=2))
    prepared = tracer.prepare(FACT)
    s, e = prepared.subject_range
    embedding = loaded.model.get_submodule(loaded.adapter.embed)
    scale = float(embedding.embed_scale) if arch == "gemma3_text" else 1.0
    rows = embedding.weight.detach().double().numpy()[list(prepared.token_ids[s:e])] * scale
    by_hand = 3 * np.std(rows, ddof=1)
    with torch.inference_mode():
        embeddings = clean_run(tracer.engine, prepared).embeddings
    noise = noise_for(tracer.settings, prepared, embeddings)
    assert noise.std == pytest.approx(by_hand, rel=1e-5)
    assert scale == 1.0 or scale == pytest.approx(loaded.model.config.hidden_size ** 0.5)
