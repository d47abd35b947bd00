"""Comparing two runs: moved peaks, changed effects, and the baseline rule."""

import json

import pytest

from fact_locator.cli import main
from fact_locator.compare import BaselineRule, compare_results, compare_traces, load_comparable
from fact_locator.errors import ResultsError
from fact_locator.results import FactResult, FactSetResult, RunResults
from tests.support.trace_factory import make_trace

BASE = make_trace()  # mlp peak: layer 0, token 2 (last subject token), TE 0.70
MOVED = make_trace(ie={"mlp": ((0.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.1, 0.0, 0.5))}, p_clean=0.5)


def run_of(trace, name="geo"):
    fact = FactResult(id="f1", subject=trace.subject, relation=trace.relation, target=trace.target, trace=trace)
    return RunResults(model={}, settings={}, versions={}, started_at="", finished_at="",
                      factsets=[FactSetResult(name=name, path=f"{name}.yaml", facts=[fact])])


def test_a_peak_that_moves_layer_and_category_is_reported():
    (peak,) = compare_traces("geo", "f1", BASE, MOVED).peaks
    assert (peak.layer_before, peak.layer_after, peak.layer_shift) == (0, 1, 1)
    assert (peak.category_before, peak.category_after) == ("last_subject", "last")
    assert peak.moved


def test_the_baseline_rule_names_each_regression():
    comparison = compare_traces("geo", "f1", BASE, MOVED)
    failures = BaselineRule(max_layer_shift=0, max_te_drop=0.1).fact_failures(comparison)
    assert "mlp peak moved +1 layers (L0 -> L1), more than 0" in failures
    assert "mlp peak moved from last_subject to last" in failures
    assert any(f.startswith("TE dropped 0.700 -> 0.450") for f in failures)
    assert BaselineRule().fact_failures(compare_traces("geo", "f1", BASE, BASE)) == []


def test_facts_only_in_one_run_are_listed():
    comparison = compare_results(run_of(BASE, "geo"), run_of(BASE, "people"))
    assert comparison.only_before == ("geo::f1",) and comparison.only_after == ("people::f1",)


def test_compare_command_exits_1_on_a_regression_with_check(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_of(BASE).save(a)
    run_of(MOVED).save(b)
    assert main(["compare", str(a), str(b)]) == 0
    assert main(["compare", str(a), str(b), "--check"]) == 1
    assert main(["compare", str(a), str(a), "--check"]) == 0
    assert "mlp L0->L1" in capsys.readouterr().out


def test_single_trace_files_can_be_compared(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(BASE.to_json())
    run = load_comparable(path)
    assert run.factsets[0].facts[0].trace == BASE


def test_a_missing_or_truncated_file_is_one_line(tmp_path, capsys):
    with pytest.raises(ResultsError, match="file not found"):
        load_comparable(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "fact-locator-results"})[:20])
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "bad.json: truncated or invalid JSON" in capsys.readouterr().err


def test_the_comparison_renders_as_a_self_contained_page(tmp_path):
    a, b, page = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.html"
    run_of(BASE).save(a)
    run_of(MOVED).save(b)
    assert main(["compare", str(a), str(b), "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count('<tr class="fact-row">') == 1
    assert "L0 last_subject &rarr; L1 last" in html and "1 regression(s)" in html
    assert "http://" not in html and "https://" not in html
    run_of(BASE, name="<b>set</b>").save(a)
    assert main(["compare", str(a), str(a), "--html", str(page)]) == 0
    assert "<b>set</b>" not in page.read_text() and "&lt;b&gt;set&lt;/b&gt;" in page.read_text()

