"""Expectations decided at a confidence level (`decide`): passed, failed or undecided.

The traces are hand-built with chosen per-sample values (`make_trace_with_draws`), so each
interval's position against the threshold is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from fact_locator.expectations import Verdict, check, decide, te_at_least, with_confidence
from tests.support.trace_factory import make_trace, make_trace_with_draws


def te_trace(te_draws: list[float]):
    """A trace whose TE in each noise draw is `te_draws` (clean value 0.75)."""
    corrupt = [0.75 - te for te in te_draws]
    restored = np.zeros((2, 5, len(te_draws))) + np.array(corrupt)
    return make_trace_with_draws(corrupt, restored)


# TE draws with mean 0.21 and standard error 0.01: the 95% interval is about [0.19, 0.23].
NEAR = [0.21 + d for d in (-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03)]


def test_te_interval_above_the_threshold_passes() -> None:
    outcome = decide(te_at_least(0.15), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.PASSED and outcome.passed
    assert "expected TE >= 0.150: holds at 95% after 8 samples: TE 0.210 [" in outcome.message


def test_te_interval_below_the_threshold_fails() -> None:
    outcome = decide(te_at_least(0.3), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.FAILED and not outcome.passed


def test_te_interval_straddling_the_threshold_is_undecided() -> None:
    outcome = decide(te_at_least(0.2), te_trace(NEAR), level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert not outcome.passed  # a caller that knows only pass/fail never passes it
    assert "undecided at 95% after 8 samples: TE 0.210 [0.19" in outcome.message
    assert outcome.observed["verdict"] == "undecided"


def test_the_point_rule_decides_the_same_trace_either_way() -> None:
    """`check` keeps today's rule: the mean 0.21 >= 0.2 passes."""
    assert check(te_at_least(0.2), te_trace(NEAR)).passed


def test_a_lower_level_decides_what_a_higher_one_leaves_open() -> None:
    assert decide(te_at_least(0.2), te_trace(NEAR), level=0.5).verdict is Verdict.PASSED


def test_looks_widen_the_interval_bonferroni() -> None:
    """1 - (1 - 0.5) / 10 = 95%: ten looks at 50% decide like one look at 95%."""
    outcome = decide(te_at_least(0.2), te_trace(NEAR), level=0.5, looks=10)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "undecided at 95% after" in outcome.message


def test_the_expectations_own_confidence_wins_over_the_sessions() -> None:
    own = with_confidence(te_at_least(0.2), 0.5)
    assert decide(own, te_trace(NEAR), level=0.95).verdict is Verdict.PASSED


def test_a_trace_without_draws_keeps_the_point_rule_and_says_so() -> None:
    outcome = decide(te_at_least(0.2), make_trace(), level=0.95)
    assert outcome.verdict is Verdict.PASSED
    assert "decided by the point value: the trace kept no per-sample values" in outcome.message


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "high", True])
def test_a_bad_level_is_refused_with_the_value(level: object) -> None:
    with pytest.raises(ValueError, match="between 0 and 1") as info:
        decide(te_at_least(0.2), te_trace(NEAR), level=level)  # type: ignore[arg-type]
    assert repr(level) in str(info.value)


# -- other per-fact kinds ---------------------------------------------------------------------
def ie_trace(ie_at: dict[tuple[int, int], list[float]], n: int = 8):
    """A trace (2 layers, 5 tokens, subject tokens 0-2) whose MLP IE in each draw is 0 except
    at the given sites; the corrupted value is 0.05 in every draw."""
    restored = np.full((2, 5, n), 0.05)
    for (layer, token), values in ie_at.items():
        restored[layer, token] += np.array(values)
    return make_trace_with_draws([0.05] * n, restored)


SPREAD = np.array([-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03])


def test_ie_passes_fails_or_stays_open_by_the_best_sites_interval() -> None:
    from fact_locator.expectations import ie_at_least

    trace = ie_trace({(0, 2): list(0.3 + SPREAD)})
    assert decide(ie_at_least("mlp", "last_subject", 0.2), trace, level=0.95).verdict is Verdict.PASSED
    assert decide(ie_at_least("mlp", "last_subject", 0.4), trace, level=0.95).verdict is Verdict.FAILED
    outcome = decide(ie_at_least("mlp", "last_subject", 0.3), trace, level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "undecided at 95% after 8 samples: max mlp IE at last_subject 0.300 [0.2" in outcome.message


def test_ie_fails_only_when_every_site_lies_below_at_once_bonferroni_over_the_sites() -> None:
    """The last subject token has 2 sites (layers 0 and 1), both at 0.3 give or take SPREAD.
    Each site's own 95% interval ends at 0.317, below 0.318, but "every site is below" is a
    claim about both at once: each site's interval at 97.5% (1 - 0.05 / 2) ends at 0.320, so
    the verdict stays open; at 0.33 both are below even then."""
    from fact_locator.expectations import ie_at_least

    trace = ie_trace({(0, 2): list(0.3 + SPREAD), (1, 2): list(0.3 + SPREAD)})
    one_at_a_time = trace.ie_interval("mlp", 0.95)
    assert one_at_a_time is not None and one_at_a_time[0][2].high < 0.318 and one_at_a_time[1][2].high < 0.318
    outcome = decide(ie_at_least("mlp", "last_subject", 0.318), trace, level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "the highest upper bound over the 2 sites at 97.5% (Bonferroni) is 0.320" in outcome.message
    assert decide(ie_at_least("mlp", "last_subject", 0.33), trace, level=0.95).verdict is Verdict.FAILED


def test_a_peak_settled_by_the_draws_passes_or_fails_and_a_contested_one_is_undecided() -> None:
    from fact_locator.expectations import peak_at

    clear = ie_trace({(0, 2): list(0.5 + SPREAD), (1, 4): list(0.1 + SPREAD)})
    assert decide(peak_at("mlp", "last_subject"), clear, level=0.95).verdict is Verdict.PASSED
    assert decide(peak_at("mlp", "last"), clear, level=0.95).verdict is Verdict.FAILED
    # Two sites whose draws cross: each holds the peak in part of the resamples.
    contested = ie_trace({(0, 2): [0.5, 0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1], (1, 4): [0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1, 0.5]})
    outcome = decide(peak_at("mlp", "last_subject"), contested, level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "with probability 0." in outcome.message


def test_a_peak_layer_range_is_decided_by_its_probability() -> None:
    from fact_locator.expectations import peak_layer_between

    trace = ie_trace({(1, 2): list(0.5 + SPREAD)})
    assert decide(peak_layer_between("mlp", 1, 1), trace, level=0.95).verdict is Verdict.PASSED
    assert decide(peak_layer_between("mlp", 0, 0), trace, level=0.95).verdict is Verdict.FAILED


def test_stronger_is_decided_by_the_paired_difference_per_draw() -> None:
    from fact_locator.expectations import stronger
    from fact_locator.tracing.sample_effects import SampleEffects
    from fact_locator.tracing.extension import measured_fields

    n = 8
    mlp = np.full((2, 5, n), 0.05)
    mlp[0, 2] += 0.3 + SPREAD
    attn = np.full((2, 5, n), 0.05)
    attn[0, 2] += 0.3 + SPREAD[::-1] * 0.5
    effects = SampleEffects.from_arrays(np.full(n, 0.05), np.full(n, 0.05), {"mlp": mlp, "attn": attn})
    trace = make_trace(**(measured_fields(effects) | {"clean_value": 0.75, "settings": {"samples": n, "kinds": ["mlp", "attn"]}}))
    assert decide(stronger("mlp", "attn", "last_subject"), trace, level=0.95).verdict is Verdict.UNDECIDED
    mlp[0, 2] += 0.2
    effects = SampleEffects.from_arrays(np.full(n, 0.05), np.full(n, 0.05), {"mlp": mlp, "attn": attn})
    trace = make_trace(**(measured_fields(effects) | {"clean_value": 0.75, "settings": {"samples": n, "kinds": ["mlp", "attn"]}}))
    assert decide(stronger("mlp", "attn", "last_subject"), trace, level=0.95).verdict is Verdict.PASSED
    assert decide(stronger("attn", "mlp", "last_subject"), trace, level=0.95).verdict is Verdict.FAILED


# -- aggregates: facts and noise draws ----------------------------------------------------------
def test_the_aggregate_interval_covers_noise_draws_as_well_as_facts() -> None:
    """Facts whose TEs agree but whose draws spread: the two-level interval is wider than the
    facts-only one, and an ATE threshold inside it is undecided."""
    from fact_locator.aggregate import aggregate
    from fact_locator.expectations import ate_at_least

    spread = np.array([-0.2, -0.1, 0.0, 0.0, 0.1, 0.2, -0.15, 0.15])
    traces = [te_trace(list(0.3 + offset + spread)) for offset in (-0.01, 0.0, 0.01, 0.0, 0.005)]
    agg = aggregate(traces, intervals=True)
    two_level = agg.two_level_interval("ate", 0.95)
    facts_only = agg.interval("ate", 0.95)
    assert two_level is not None and facts_only is not None
    assert two_level.high - two_level.low > 3 * (facts_only.high - facts_only.low)
    outcome = decide(ate_at_least(0.28), agg, level=0.95)
    assert outcome.verdict is Verdict.UNDECIDED
    assert "bootstrap over facts and their noise draws" in outcome.message
    assert decide(ate_at_least(0.1), agg, level=0.95).verdict is Verdict.PASSED
    assert decide(ate_at_least(0.5), agg, level=0.95).verdict is Verdict.FAILED


def test_an_aggregate_of_traces_without_draws_falls_back_to_facts_and_round_trips() -> None:
    from fact_locator.aggregate import Aggregate, aggregate
    from fact_locator.expectations import ate_at_least

    agg = aggregate([make_trace(), make_trace(p_corrupt=0.1)], intervals=True)
    assert agg.draws == {}
    outcome = decide(ate_at_least(0.5), agg, level=0.95)
    assert "bootstrap over facts only: the traces kept no per-sample values" in outcome.message
    drawn = aggregate([te_trace(NEAR), te_trace(NEAR)], intervals=True)
    assert Aggregate.from_dict(drawn.to_dict()) == drawn


# -- the YAML confidence: key and old results --------------------------------------------------
def test_an_expectations_confidence_key_beside_or_inside_its_mapping() -> None:
    from fact_locator.expectations import parse_expectation

    beside = parse_expectation({"te": ">= 0.2", "confidence": 0.99}, "f.yaml", 3, "fact").expectation
    inside = parse_expectation({"ie": {"kind": "mlp", "at": "last", "min": 0.1, "confidence": 0.9}}, "f.yaml", 3,
                               "fact").expectation
    assert beside.confidence == 0.99 and inside.confidence == 0.9


@pytest.mark.parametrize("value", [0, 1.5, "high"])
def test_a_bad_confidence_key_names_the_file_line_and_value(value: object) -> None:
    from fact_locator.errors import FactSetError
    from fact_locator.expectations import parse_expectation

    with pytest.raises(FactSetError, match=r"f\.yaml:3: te: 'confidence': a confidence level .*got") as info:
        parse_expectation({"te": ">= 0.2", "confidence": value}, "f.yaml", 3, "fact")
    assert repr(value) in str(info.value)


def test_old_results_files_still_load_without_verdicts() -> None:
    from pathlib import Path

    from fact_locator.results import RunResults

    old = RunResults.load(Path(__file__).parent / "data" / "results_written_before_the_results_package.json")
    outcomes = old.all_outcomes()
    assert outcomes and all(o.counted_as == "" and o.outcome != "undecided" for o in outcomes)


# -- on a model: seeds ------------------------------------------------------------------------
def test_a_decided_verdict_agrees_across_seeds_near_its_threshold() -> None:
    """Five seeds of 16 draws on a tiny model, thresholds placed around the seeds' pooled TE:
    the point rule flips between seeds there, a decided verdict never does (a seed may leave
    it undecided)."""
    from tests.support.reference_check import SUBJECT_MIDDLE
    from tests.support.tiny_models import tiny_loaded

    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.tracer import Tracer

    loaded = tiny_loaded("gpt2", layers=4)
    traces = [Tracer(loaded, TraceSettings(samples=16, window=2, seed=seed)).trace(SUBJECT_MIDDLE) for seed in range(5)]
    pooled = float(np.mean([t.te for t in traces]))
    se = max(float(t.te_se() or 0.0) for t in traces)
    assert se > 0
    assert len({check(te_at_least(pooled), t).passed for t in traces}) == 2  # near: the seed decides the point rule
    for k in (-3, -1, -0.5, 0, 0.5, 1, 3):
        threshold = pooled + k * se
        verdicts = [decide(te_at_least(threshold), t, level=0.95).verdict for t in traces]
        assert len({v for v in verdicts if v is not Verdict.UNDECIDED}) <= 1, (k, verdicts)
    far = [decide(te_at_least(pooled - 8 * se), t, level=0.95).verdict for t in traces]
    assert far == [Verdict.PASSED] * 5
