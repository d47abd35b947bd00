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
