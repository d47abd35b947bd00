"""Attribution patching approximates the exact trace: to first order, so closely when the
noise is small, and always labelled approximate."""

import numpy as np
import pytest

from fact_locator.facts import Fact
from fact_locator.tracing.attribution import ATP_METHOD, attribution_patch
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import TINY_CONFIGS, tiny_loaded

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy")
# Words before the subject: their cells are 0 in both traces, and are left out below.
FACT_AFTER_WORDS = Fact("the Eiffel Tower", "In Paris, {} is located in the city of", "Paris")


def zero_by_construction(kind: str, n_layers: int, n_tokens: int, subject_start: int) -> np.ndarray:
    """Cells whose IE is 0 in any exact trace and any AtP estimate: tokens before the subject
    (noise on the subject cannot reach them under causal attention, so clean = corrupted
    there), and for the hidden state the last layer at every token but the last (nothing
    reads it)."""
    mask = np.zeros((n_layers, n_tokens), dtype=bool)
    mask[:, :subject_start] = True
    if kind == "hidden":
        mask[n_layers - 1, : n_tokens - 1] = True
    return mask


@pytest.mark.parametrize("fact", [FACT, FACT_AFTER_WORDS], ids=["subject_first", "words_before"])
@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_with_small_noise_atp_follows_the_exact_trace(arch, fact):
    tracer = Tracer(tiny_loaded(arch), TraceSettings(samples=3, window=2, noise=1e-3))
    exact, approx = tracer.trace(fact), attribution_patch(tracer, fact)
    assert approx.settings["method"] == ATP_METHOD
    assert approx.p_clean == pytest.approx(exact.p_clean, abs=1e-6)
    assert approx.p_corrupt == pytest.approx(exact.p_corrupt, abs=1e-6)
    for kind in exact.kinds:
        a, b = np.array(exact.ie[kind]), np.array(approx.ie[kind])
        zero = zero_by_construction(kind, exact.n_layers, len(exact.tokens), exact.subject_range[0])
        assert np.abs(a[zero]).max(initial=0) < 1e-8 and np.abs(b[zero]).max(initial=0) < 1e-8
        # Correlate only the cells that can differ: pairs of zeros would agree by construction.
        a, b = a[~zero], b[~zero]
        assert np.abs(a).max() > 0  # the comparison means something
        assert np.corrcoef(a, b)[0, 1] > 0.9, kind
    hidden_a, hidden_b = np.array(exact.ie["hidden"]), np.array(approx.ie["hidden"])
    # The hidden-state estimate is the plainest first-order term: close in value too.
    assert np.abs(hidden_a - hidden_b).max() <= 0.15 * np.abs(hidden_a).max()


def test_atp_leaves_the_weights_as_they_were():
    loaded = tiny_loaded("llama")
    attribution_patch(Tracer(loaded, TraceSettings(samples=2, window=2)), FACT)
    assert all(p.requires_grad for p in loaded.model.parameters())
    assert all(p.grad is None for p in loaded.model.parameters())
    assert all(not m._forward_hooks for m in loaded.model.modules())


def test_atp_measures_the_chosen_metric():
    fact = Fact("The Colosseum", "{} is located in the country of", "Italy", distractor="Paris")
    tracer = Tracer(tiny_loaded("gpt2"), TraceSettings(kinds="hidden", samples=3, window=2, noise=1e-3, metric="logit_diff"))
    exact, approx = tracer.trace(fact), attribution_patch(tracer, fact)
    assert approx.metric == "logit_diff"
    assert approx.clean_value == pytest.approx(exact.clean_value, abs=1e-5)
    assert approx.corrupt_value == pytest.approx(exact.corrupt_value, abs=1e-5)
    keep = ~zero_by_construction("hidden", exact.n_layers, len(exact.tokens), exact.subject_range[0])
    a, b = np.array(exact.ie["hidden"])[keep], np.array(approx.ie["hidden"])[keep]
    assert np.corrcoef(a, b)[0, 1] > 0.9
