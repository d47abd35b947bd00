"""The built-in model, smollm2-135m, on the paper's running example.

SmolLM2 (30 layers) on "The Colosseum is located in the country of" -> " Italy" shows both
of the paper's sites: the MLPs at the subject tokens in the lower layers, and attention at
the last token in the upper layers.
"""

import pytest

from fact_locator.facts import Fact
from fact_locator.models.loading import load_model
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def colosseum():
    loaded = load_model("smollm2-135m", device="cpu", progress=False)
    return Tracer(loaded, TraceSettings()).trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))


def test_the_model_knows_the_fact_and_noise_destroys_it(colosseum):
    assert colosseum.known and colosseum.target_token == " Italy"
    assert colosseum.te > 0.3


def test_the_mlp_peak_is_at_a_subject_token_in_the_lower_half(colosseum):
    layer, token, value = colosseum.peak("mlp")
    start, end = colosseum.subject_range
    assert start <= token < end
    assert layer < colosseum.n_layers // 2
    assert value > 0.1


def test_the_attention_peak_is_at_the_last_token_in_the_upper_half(colosseum):
    layer, token, value = colosseum.peak("attn")
    assert token == len(colosseum.tokens) - 1
    assert layer >= colosseum.n_layers // 2
    assert value > 0.1


def test_the_noise_and_its_calibration_are_recorded(colosseum):
    assert colosseum.noise.std > 0
    assert "3 x std of subject-token embeddings" in colosseum.noise.calibration
    assert colosseum.settings["samples"] == 10 and colosseum.settings["window"] == 10


def test_smollm2s_noise_is_three_times_the_std_of_its_reference_subjects_embeddings(colosseum):
    """The number the README and the audits quote; it moves only when the model, the reference
    subjects or the calibration change (then update README and docs/method.md with it)."""
    assert colosseum.noise.source == "model"
    assert colosseum.noise.std == pytest.approx(3 * 0.11806, abs=5e-5)
    assert colosseum.noise.std == pytest.approx(0.354180, abs=1e-5)
    assert "386 reference subjects" in colosseum.noise.calibration


def test_gemma3_adds_bos_yet_the_subject_span_and_noise_are_right():
    """Gemma's tokenizer adds a BOS token and its embedding module scales by sqrt(d): the span
    must skip the BOS, and noise calibrated on the module's output must still destroy the fact."""
    loaded = load_model("gemma3-270m", device="cpu", progress=False)
    tracer = Tracer(loaded, TraceSettings(kinds="mlp", samples=3))
    trace = tracer.trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))
    assert trace.tokens[0] == "<bos>" and trace.subject_range[0] == 1
    assert "".join(trace.tokens[slice(*trace.subject_range)]) == "The Colosseum"
    assert trace.known and trace.te > 0.3
    layer, token, value = trace.peak("mlp")
    assert trace.subject_range[0] <= token < trace.subject_range[1] and value > 0.05
