"""Method extensions as plugin settings: --fl-metric/--fl-corruption (and a fact set's
settings:), --fl-method atp, --fl-severed, --fl-baseline, and interval expectations."""

from __future__ import annotations

import pytest
from tests.support.pytester_harness import GEO

INTERVALS = GEO.replace('aggregate:\n  - ate: ">= -1"\n',
                        'aggregate:\n  - ate: ">= -1 at 95%"\n  - ate: {min: 0.99, level: 0.95, id: ate-high}\n')


def _facts(data: dict) -> dict:
    return {f["id"]: f for fs in data["factsets"] for f in fs["facts"]}


def test_metric_from_the_factset_then_the_command_line(fl):
    # A log-probability TE is not bounded by -1: a threshold that holds at any level needs room.
    fl.factset("geo", GEO.replace("unknown: trace\n", "unknown: trace\nsettings:\n  metric: logprob\n")
               .replace('- te: ">= -1"', '- te: ">= -100"'))
    result = fl.run("--fl-json", "results.json")
    result.assert_outcomes(passed=3, xfailed=1)
    data = fl.results()
    assert {f["trace"]["metric"] for f in _facts(data).values()} == {"logprob"}
    fs_settings = data["settings"]["factset_settings"]["factsets/geo.yaml"]
    assert fs_settings["metric"] == "logprob" and fs_settings["sources"]["metric"] == "factset"
    assert fs_settings["sources"]["corruption"] == "default"

    result = fl.run("--fl-json", "results.json", "--fl-metric", "prob", "--fl-corruption", "uniform")
    result.stdout.fnmatch_lines(["*corruption=uniform (cli), metric=prob (cli), method=exact*"])
    data = fl.results()
    assert {f["trace"]["metric"] for f in _facts(data).values()} == {"prob"}
    assert {f["trace"]["settings"]["corruption"] for f in _facts(data).values()} == {"uniform"}
    assert data["settings"]["metric"] == "prob" and data["settings"]["sources"]["metric"] == "cli"


def test_ini_metric_beats_the_factset(fl):
    fl.ini(fl_metric="prob", fl_corruption="uniform")
    fl.factset("geo", GEO.replace("unknown: trace\n", "unknown: trace\nsettings:\n  metric: logprob\n"))
    result = fl.run("--fl-json", "results.json")
    result.stdout.fnmatch_lines(["*corruption=uniform (ini), metric=prob (ini)*"])
    data = fl.results()
    assert {f["trace"]["metric"] for f in _facts(data).values()} == {"prob"}
    assert data["settings"]["factset_settings"]["factsets/geo.yaml"]["sources"]["metric"] == "ini"


def test_bad_method_options_are_usage_errors(fl):
    fl.factset("geo", GEO)
    result = fl.run("--fl-metric", "logits")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*unknown metric 'logits': choose one of prob, logprob, logit_diff*"])
    result = fl.run("--fl-baseline", "missing.json")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*fact-locator: --fl-baseline missing.json: *missing.json: file not found*"])
    (fl.pytester.path / "bad.json").write_text("{not json")
    result = fl.run("--fl-baseline", "bad.json")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--fl-baseline bad.json: *invalid JSON*"])


def test_atp_marks_traces_approximate_and_intervals_are_checked(fl):
    fl.factset("geo", INTERVALS)
    result = fl.run("--fl-method", "atp", "--fl-json", "results.json", "--fl-html", "report.html", "-rA")
    result.stdout.fnmatch_lines_random([
        "*method=atp (cli)*",
        "*method=atp: traces are approximate*",
        # Its own level is the level it is decided at (AtP keeps no draws: over facts only).
        "*ate-high: ATE = * over 2 facts; expected >= 0.990: does not hold at 95% after 2 facts: [[]*, *[]] "
        "(bootstrap over facts only: the traces kept no per-sample values)*",
    ])
    result.assert_outcomes(passed=3, failed=1, xfailed=1)
    data = fl.results()
    assert all(f["trace"]["settings"]["method"].startswith("atp") for f in _facts(data).values())
    agg = data["factsets"][0]["aggregate"]
    assert agg["intervals"]["ate"]["level"] == 0.95 and len(agg["samples"]["ate"]) == 2
    html = (fl.pytester.path / "report.html").read_text()
    assert "approximate (AtP)" in html and "at 95%" in html
    # the exact method does not reuse the approximate traces: the method is in the cache key
    fl.log.unlink()
    fl.run("--fl-json", "results.json")
    assert sorted(fl.traced()) == ["colosseum", "toyota"]
    assert not any("method" in f["trace"]["settings"] for f in _facts(fl.results()).values())


def test_severed_shares_go_in_the_results_and_reports(fl):
    fl.factset("geo", GEO)
    result = fl.run("--fl-severed", "--fl-json", "results.json", "--fl-html", "report.html")
    result.stdout.fnmatch_lines(["*severed paths: on*", "*severed colosseum: through MLP *, through attention *"])
    facts = _facts(fl.results())
    for fact in facts.values():
        severed = fact["severed"]
        assert set(severed) == {"token", "token_text", "peak_layer", "peak_ie", "shares", "curves", "p_corrupt"}
        assert set(severed["shares"]) == {"mlp", "attn"} and isinstance(severed["shares"]["mlp"], float)
        n_layers = len(fact["trace"]["ie"]["hidden"])
        assert {kind: len(curve) for kind, curve in severed["curves"].items()} == {"hidden": n_layers, "mlp": n_layers, "attn": n_layers}
        assert severed["curves"]["hidden"][severed["peak_layer"]] == severed["peak_ie"]
    html = (fl.pytester.path / "report.html").read_text()
    assert "severed (last subject token)" in html and html.count('<svg class="severed-chart"') == len(facts)


def test_without_severed_there_are_no_shares(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "results.json")
    assert all(f["severed"] is None for f in _facts(fl.results()).values())


def test_baseline_passes_against_itself_and_fails_for_another_model(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "a.json").assert_outcomes(passed=3, xfailed=1)

    result = fl.run("--fl-baseline", "a.json", "-v")
    result.stdout.fnmatch_lines_random([
        "*geo.yaml::colosseum::baseline PASSED*",
        "*geo.yaml::toyota::baseline PASSED*",
        "*geo.yaml::aggregate::baseline PASSED*",
    ])
    result.assert_outcomes(passed=6, xfailed=1)

    result = fl.run("--fl-model", "python:fl_tiny:llama_seed1", "--fl-baseline", "a.json",
                    "--fl-baseline-max-layer-shift", "0", "--fl-baseline-max-te-drop", "0",
                    "--fl-json", "b.json", "--fl-html", "b.html")
    result.stdout.fnmatch_lines(["*baseline=a.json (max layer shift 0, max ATE drop 0.05, max TE drop 0.0)*"])
    data = fl.results("b.json")
    baseline = [o for f in _facts(data).values() for o in f["outcomes"] if o["expectation"] == "baseline"]
    assert len(baseline) == 2
    failed = [o for o in baseline if o["outcome"] == "failed"]
    assert failed, baseline
    for o in failed:
        assert o["message"].startswith("baseline: ")
        assert "peak moved" in o["message"] or "TE dropped" in o["message"]
    result.stdout.fnmatch_lines(["*FAILED*::baseline*"])
    assert "baseline: " in (fl.pytester.path / "b.html").read_text()


def test_str_replacements_default_to_the_other_subjects_of_the_set(tmp_path):
    from fact_locator.factset import parse_factset
    from fact_locator.locator import Locator
    from fact_locator.tracing.settings import TraceSettings

    fs = parse_factset(GEO.replace("    target: Japan\n", "    target: Japan\n    replacements: [Honda]\n"),
                       tmp_path / "geo.yaml")
    locator = Locator(model="python:tests.support.fl_tiny:llama")
    colosseum, toyota = (s.fact for s in fs.facts)
    str_settings = TraceSettings(corruption="str")
    assert locator.fact_for(colosseum, fs, str_settings).replacements == ("Toyota",)
    assert locator.fact_for(toyota, fs, str_settings).replacements == ("Honda",)  # its own replacements: win
    assert locator.fact_for(colosseum, fs, TraceSettings()).replacements == ()


def test_a_companion_that_cannot_be_traced_does_not_fail_the_fact_it_would_join(tmp_path):
    """Same prompt shape, so the Parthenon would be traced together with the Colosseum; under
    logit_diff it has no distractor. The Colosseum is traced alone, the Parthenon's own call
    reports its own error."""
    from fact_locator.errors import FactError
    from fact_locator.factset import parse_factset
    from fact_locator.locator import Locator

    text = """\
name: pair
facts:
  - id: colosseum
    subject: The Colosseum
    relation: "{} is located in the country of"
    target: Italy
    distractor: France
  - id: parthenon
    subject: The Parthenon
    relation: "{} is located in the country of"
    target: Greece
"""
    fs = parse_factset(text, tmp_path / "pair.yaml")
    colosseum, parthenon = (s.fact for s in fs.facts)
    locator = Locator(model="python:tests.support.fl_tiny:llama", overrides={"metric": "logit_diff", "samples": 2}, use_cache=False)
    tracer = locator.tracer(locator.settings_for(fs), locator.model_for(fs))
    assert tracer.batch_mates(colosseum, [parthenon]) == [parthenon]  # they would share forwards
    trace = locator.trace(colosseum, fs, companions=[parthenon])
    assert trace.metric == "logit_diff" and trace.timings["facts_together"] == 1.0
    with pytest.raises(FactError, match="parthenon.*distractor"):
        locator.trace(parthenon, fs)


def test_baseline_under_another_noise_fails_with_both_values_unless_allowed(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "a.json").assert_outcomes(passed=3, xfailed=1)
    noise = {f["trace"]["noise"]["std"] for f in _facts(fl.results("a.json")).values()}
    assert len(noise) == 1  # one noise per model
    before = noise.pop()

    result = fl.run("--fl-baseline", "a.json", "--fl-noise", "0.2", "--fl-json", "b.json")
    baseline = [o for f in _facts(fl.results("b.json")).values() for o in f["outcomes"] if o["expectation"] == "baseline"]
    assert len(baseline) == 2 and all(o["outcome"] == "failed" for o in baseline)
    changed = f"noise differs: before {before:.4g} (model), after 0.2 (given); effects are not comparable"
    assert all(o["message"].startswith(f"baseline: {changed}") for o in baseline), baseline
    result.stdout.fnmatch_lines(["*aggregate failed baseline: baseline: noise differs*"])

    result = fl.run("--fl-baseline", "a.json", "--fl-noise", "0.2", "--fl-baseline-allow-noise-change",
                    "--fl-json", "c.json")
    result.stdout.fnmatch_lines(["*baseline=a.json (max layer shift 2, *, max TE drop 0.1, noise change allowed)*"])
    baseline = [o for f in _facts(fl.results("c.json")).values() for o in f["outcomes"] if o["expectation"] == "baseline"]
    assert all(f"{changed} (accepted: allow noise change)" in o["message"] for o in baseline), baseline
    assert not any(o["message"].startswith(f"baseline: {changed}") for o in baseline)
