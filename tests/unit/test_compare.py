"""Comparing two runs: moved peaks, changed effects, and the baseline rule.
(The `compare` command: tests/integration/test_compare.py.)"""

from fact_locator.compare import BaselineRule, compare_results, compare_traces, load_comparable
from tests.support.trace_factory import make_trace, run_of

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
