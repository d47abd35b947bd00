"""Comparing two runs: moved peaks, changed effects, and the baseline rule.
(The `compare` command: tests/integration/test_compare.py.)"""

from dataclasses import replace

from fact_locator.compare import BaselineRule, SetComparison, compare_results, compare_traces, load_comparable, noise_change
from fact_locator.tracing.trace import NoiseInfo
from tests.support.trace_factory import make_trace, make_trace_with_draws, run_of

BASE = make_trace()  # mlp peak: layer 0, token 2 (last subject token), TE 0.70
MOVED = make_trace(ie={"mlp": ((0.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.1, 0.0, 0.5))}, p_clean=0.5)


def test_a_peak_that_moves_layer_and_category_is_reported():
    (peak,) = compare_traces("geo", "f1", BASE, MOVED).peaks
    assert (peak.layer_before, peak.layer_after, peak.layer_shift) == (0, 1, 1)
    assert (peak.category_before, peak.category_after) == ("last_subject", "last")
    assert peak.moved


def test_the_baseline_rule_names_each_regression():
    # Traces without per-sample data (older files): today's point rule, and the message says so.
    comparison = compare_traces("geo", "f1", BASE, MOVED)
    failures = BaselineRule(max_layer_shift=0, max_te_drop=0.1).fact_failures(comparison)
    assert "mlp peak moved +1 layers (L0 -> L1), more than 0 (no per-sample data: point values compared)" in failures
    assert "mlp peak moved from last_subject to last (no per-sample data: point values compared)" in failures
    assert "TE dropped 0.700 -> 0.450, more than 0.1 (no per-sample data: point values compared)" in failures
    assert BaselineRule().fact_failures(compare_traces("geo", "f1", BASE, BASE)) == []


def test_facts_only_in_one_run_are_listed():
    comparison = compare_results(run_of(BASE, "geo"), run_of(BASE, "people"))
    assert comparison.only_before == ("geo::f1",) and comparison.only_after == ("people::f1",)


def test_single_trace_files_can_be_compared(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(BASE.to_json())
    run = load_comparable(path)
    assert run.factsets[0].facts[0].trace == BASE


# -- changes beside the noise: hand-built traces whose noise draws are chosen --------------------
# make_trace_with_draws: clean value 0.75, TE of a draw = 0.75 - its corrupted value; the MLP
# grid's draws are (layers 2, tokens 5, draws).


def _draws(corrupt, bumps=None):
    """A trace with corrupted values `corrupt` whose only IE is `bumps[(layer, token)]` (per draw)."""
    import numpy as np

    corrupt = np.asarray(corrupt, dtype=float)
    restored = np.zeros((2, 5, corrupt.size)) + corrupt
    for (layer, token), values in (bumps or {(0, 2): [0.4] * corrupt.size}).items():
        restored[layer, token] += np.asarray(values, dtype=float)
    return make_trace_with_draws(corrupt, restored)


TIGHT_BEFORE = _draws([0.04, 0.06] * 5)  # TE 0.70, sd 0.0105 over 10 draws


def test_a_te_drop_beyond_both_runs_noise_is_called_with_both_intervals():
    after = _draws([0.24, 0.26] * 5)  # TE 0.50, as tight
    comparison = compare_traces("geo", "f1", TIGHT_BEFORE, after)
    # Welch: se sqrt(2) * 0.00333, df 18, t 2.101: half-width 0.0099.
    assert BaselineRule(max_te_drop=0.1).fact_failures(comparison) == [
        "TE dropped 0.700 -> 0.500 (before 0.700 [0.692, 0.708], after 0.500 [0.492, 0.508]; "
        "drop 0.200 [0.190, 0.210] > 0.1)"]


def test_a_te_drop_inside_the_noise_is_reported_not_called():
    noisy = _draws([0.05, 0.45] * 5)  # TE 0.50 again, but its draws spread 0.21
    comparison = compare_traces("geo", "f1", TIGHT_BEFORE, noisy)
    assert comparison.te_before - comparison.te_after > 0.1  # the point rule would fail it
    rule = BaselineRule(max_te_drop=0.1)
    assert rule.fact_failures(comparison) == []
    (finding,) = rule.fact_findings(comparison)
    assert not finding.called and finding.about == "TE"
    assert finding.message.startswith("TE dropped 0.700 -> 0.500: within noise (before 0.700 [0.692, 0.708], "
                                      "after 0.500 [0.349, 0.651]; drop 0.200 [")
    assert finding.message.endswith("not all > 0.1 at level 0.95)")


def test_the_level_decides_how_wide_the_drop_may_be():
    noisy = _draws([0.05, 0.45] * 5)
    assert BaselineRule(max_te_drop=0.1, level=0.5).fact_failures(compare_traces("geo", "f1", TIGHT_BEFORE, noisy, 0.5))


LAYER_0 = {(0, 2): [0.4] * 10}
# Layer 1 wins on the mean (0.325 against 0.3) but loses every other draw: an uncertain peak.
RIVALS = {(0, 2): [0.5, 0.1] * 5, (1, 2): [0.1, 0.55] * 5}


def test_a_peak_move_counts_only_when_both_peaks_are_located_at_the_level():
    rule = BaselineRule(max_layer_shift=0)
    uncertain = compare_traces("geo", "f1", _draws([0.05] * 10, LAYER_0), _draws([0.05] * 10, RIVALS))
    (peak,) = uncertain.peaks
    assert (peak.layer_before, peak.layer_after) == (0, 1)
    assert peak.layer_probability_before == 1.0 and 0.3 < peak.layer_probability_after < 0.9
    assert rule.fact_failures(uncertain) == []
    (finding,) = rule.fact_findings(uncertain)
    assert finding.message.startswith("mlp peak moved +1 layers (L0 -> L1), more than 0: within noise "
                                      "(located with probability 1.00 before, 0.")
    assert finding.message.endswith("a move counts when both are >= 0.95)")

    certain = compare_traces("geo", "f1", _draws([0.05] * 10, LAYER_0), _draws([0.05] * 10, {(1, 2): [0.4] * 10}))
    assert rule.fact_failures(certain) == [
        "mlp peak moved +1 layers (L0 -> L1), more than 0 (located with probability 1.00 before, 1.00 after, "
        "at level 0.95)"]


def test_a_trace_without_draws_on_either_side_falls_back_to_point_values():
    comparison = compare_traces("geo", "f1", TIGHT_BEFORE, MOVED)
    assert comparison.te_interval_before is not None and comparison.te_interval_after is None
    assert BaselineRule(max_layer_shift=0).fact_failures(comparison) == [
        "mlp peak moved +1 layers (L0 -> L1), more than 0 (no per-sample data: point values compared)",
        "mlp peak moved from last_subject to last (no per-sample data: point values compared)",
        "TE dropped 0.700 -> 0.450, more than 0.1 (no per-sample data: point values compared)",
    ]


def test_an_ate_drop_is_judged_by_both_runs_bootstraps_over_facts():
    rule = BaselineRule(max_ate_drop=0.05)
    spread = SetComparison("geo", 0.55, 0.475, (), (0.2, 0.9, 0.5, 0.6), (0.1, 0.8, 0.4, 0.6))
    (finding,) = rule.set_findings(spread)
    assert not finding.called and finding.message.startswith("ATE dropped 0.550 -> 0.475: within noise (before 0.550 [")
    tight = SetComparison("geo", 0.705, 0.505, (), (0.70, 0.72, 0.71, 0.69), (0.50, 0.52, 0.51, 0.49))
    (failure,) = rule.set_failures(tight)
    assert failure.startswith("ATE dropped 0.705 -> 0.505 (before 0.705 [") and "; drop 0.200 [" in failure
    assert failure.endswith("] > 0.05)")
    # An aggregate written before its per-fact values were kept: the point rule, said so.
    assert rule.set_failures(SetComparison("geo", 0.55, 0.475, ())) == [
        "ATE dropped 0.550 -> 0.475, more than 0.05 (no per-sample data: point values compared)"]


def test_noise_differs_by_value_beyond_one_in_a_million_or_by_source():
    model = NoiseInfo(0.3545, "3 x std", "model")
    assert noise_change(model, replace(model, std=0.3545 * (1 + 1e-7))) is None
    assert noise_change(model, replace(model, source="")) is None  # a trace that did not record its source
    assert noise_change(model, replace(model, source="factset")) is not None
    change = noise_change(replace(model, source="factset"), replace(model, std=0.1234))
    assert str(change) == "noise differs: before 0.3545 (factset), after 0.1234 (model); effects are not comparable"
    close = noise_change(model, replace(model, std=0.354501))  # 2.8e-6 apart: printed with the digits that differ
    assert str(close).startswith("noise differs: before 0.3545 (model), after 0.354501 (model)")


def test_a_noise_change_fails_the_rule_unless_allowed():
    other = replace(BASE, noise=NoiseInfo(0.1234, "3 x std", "model"))
    comparison = compare_traces("geo", "f1", BASE, other)
    message = "noise differs: before 0.1235 (source unrecorded), after 0.1234 (model); effects are not comparable"
    assert BaselineRule().fact_failures(comparison) == [message]
    assert BaselineRule().fact_failures(comparison, noise=False) == []
    allowed = BaselineRule(allow_noise_change=True)
    assert allowed.fact_failures(comparison) == []
    assert [f.message for f in allowed.fact_findings(comparison)] == [f"{message} (accepted: allow noise change)"]
    run = compare_results(run_of(BASE), run_of(other))
    assert BaselineRule().set_failures(run.sets[0]) == [message]
