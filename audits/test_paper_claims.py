"""Meng et al. 2022 (ROME), Figure 2 and section 2, as audits on the model under test.

Each test takes the aggregate (ATE, AIE per token category and layer) over the known facts
of a fact set; the facts are traced once, through the trace cache, and shared with the YAML
expectations of the same sets. Thresholds are deliberately looser than GPT-2 XL's numbers
(ATE 18.6%, max AIE hidden 8.7%, mlp 6.6%, attn 1.6% at the last subject token): the claims
audited are where the effects sit, not how large they are on a 1.5B model.
"""

from __future__ import annotations

import pytest

from fact_locator.expectations import assert_expectation, ate_at_least, max_aie_greater

LANDMARKS = "factsets/landmarks.yaml"
CITIES = "factsets/cities.yaml"
SETS = [pytest.param(LANDMARKS, id="landmarks"), pytest.param(CITIES, id="cities")]


def _factset_marked(path: str):
    return pytest.mark.factset(path)


@_factset_marked(LANDMARKS)
def test_corrupting_the_subject_destroys_the_fact(aggregate):
    """ATE: noise on the subject embeddings lowers P(o) substantially (paper: 18.6%)."""
    assert_expectation(ate_at_least(0.1), aggregate)


@_factset_marked(LANDMARKS)
def test_early_site_mlp_at_the_last_subject_token_in_the_lower_two_thirds(aggregate):
    """The early site: MLP restoration at the last subject token peaks below two thirds of the
    layers (the paper's early site sits in GPT-2 XL's lower and middle layers)."""
    layer, value = aggregate.max_aie("mlp", "last_subject")
    n_layers = len(aggregate.curve("mlp", "last_subject"))
    assert value > 0.02, f"max mlp AIE at the last subject token is only {value:.3f} (layer {layer})"
    assert layer < n_layers * 2 // 3, f"mlp AIE at the last subject token peaks at layer {layer} of {n_layers}"


@_factset_marked(LANDMARKS)
def test_late_site_attention_at_the_last_token_in_the_upper_half(aggregate):
    """The late site: attention restoration at the last token peaks in the upper layers."""
    layer, value = aggregate.max_aie("attn", "last")
    n_layers = len(aggregate.curve("attn", "last"))
    assert value > 0.02, f"max attn AIE at the last token is only {value:.3f} (layer {layer})"
    assert layer >= n_layers // 2, f"attn AIE at the last token peaks at layer {layer} of {n_layers}"


@_factset_marked(LANDMARKS)
def test_mlp_beats_attention_at_the_last_subject_token(aggregate):
    """Paper: max AIE at the last subject token, MLP 6.6% vs attention 1.6%."""
    assert_expectation(max_aie_greater("mlp", "last_subject", "attn", "last_subject"), aggregate)


@_factset_marked(CITIES)
def test_mlp_beats_attention_at_the_last_subject_token_cities(aggregate):
    """The same claim on another set of facts: cities (their subjects are 2-4 tokens on smollm2-135m)."""
    assert_expectation(max_aie_greater("mlp", "last_subject", "attn", "last_subject"), aggregate)
