"""Running audits: expectation messages, unknown facts, the cache (hits and resume),
-k with aggregates, JUnit properties, xdist merging, the results file."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.support.pytester_harness import GEO

ALL_EXPECTATIONS = """\
name: checks
unknown: trace
aggregate:
  - ate: ">= -1"
  - ate: {min: 0.9, id: ate-high}
  - aie: {kind: mlp, at: last_subject, min: -1}
  - aie: {kind: attn, at: last, min: 0.9, id: aie-high}
  - max-aie: {kind: mlp, at: last_subject, greater-than: {kind: attn, at: last_subject}}
facts:
  - id: colosseum
    subject: The Colosseum
    relation: "{} is located in the country of"
    target: Italy
    expect:
      - te: ">= -1"
      - te: {min: 0.9, id: te-high}
      - ie: {kind: mlp, at: last_subject, min: -1}
      - ie: {kind: hidden, at: last_subject, min: 0.9, id: ie-high}
      - stronger: {kind: mlp, than: attn, at: last_subject}
      - peak-layer: {kind: mlp, between: [0, 1]}
      - peak-layer: {kind: attn, between: [5, 9], id: peak-layer-high}
      - mlp-peak: last_subject
      - attn-peak: last
"""


def test_every_expectation_reports_pass_and_fail_messages(fl):
    fl.factset("checks", ALL_EXPECTATIONS)
    result = fl.run("--fl-json", "results.json", "-rA")
    result.stdout.fnmatch_lines_random([
        "te-high: TE = * expected TE >= 0.900: does not hold*",
        "ie-high: *hidden*",
        "peak-layer-high: *",
        "ate-high: ATE = * over 1 fact*",
        "aie-high: *",
    ])
    data = fl.results()
    outcomes = {o["expectation"]: o for f in data["factsets"][0]["facts"] for o in f["outcomes"]}
    outcomes.update({o["expectation"]: o for o in data["factsets"][0]["outcomes"]})
    assert outcomes["te"]["outcome"] == "passed" and "expected TE >= -1.000: holds" in outcomes["te"]["message"]
    assert outcomes["te-high"]["outcome"] == "failed"
    assert outcomes["ie-mlp-last_subject"]["outcome"] == "passed"
    assert outcomes["ie-high"]["outcome"] == "failed"
    assert outcomes["peak-layer-high"]["outcome"] == "failed"
    assert outcomes["ate"]["outcome"] == "passed" and outcomes["ate-high"]["outcome"] == "failed"
    assert outcomes["aie-high"]["outcome"] == "failed"
    for name, outcome in outcomes.items():
        assert outcome["message"].startswith(name), (name, outcome["message"])
    assert data["factsets"][0]["aggregate"]["n_facts"] == 1


def test_unknown_facts_are_skipped_with_the_numbers(fl):
    fl.factset("geo", GEO.replace("unknown: trace", "unknown: skip"))
    result = fl.run("-rs", "--fl-json", "results.json")
    result.stdout.fnmatch_lines([
        "SKIPPED * unknown fact colosseum: model predicts '*' (p=0.*), target ' Ita' has p=0.00",
    ])
    result.assert_outcomes(skipped=4)  # 3 facts' cases + the aggregate (no known fact)
    facts = fl.results()["factsets"][0]["facts"]
    assert [f["status"] for f in facts] == ["unknown", "unknown"]
    assert all(f["trace"] is None and "model predicts" in f["status_reason"] for f in facts)
    assert fl.traced() == []  # unknown facts get only the clean run


def test_unknown_rule_from_the_command_line(fl):
    fl.factset("geo", GEO)
    result = fl.run("--fl-unknown", "fail", "-k", "toyota")
    result.stdout.fnmatch_lines(["factsets/geo.yaml:15: unknown fact toyota: model predicts*"])
    result.assert_outcomes(failed=1)


KNOWN = GEO.replace("unknown: trace", "unknown: skip") + """\
  - id: needle
    subject: The Space Needle
    relation: "{} is located in"
    target: city
"""


def test_known_fact_is_traced_under_unknown_skip(fl):
    # ' city' is the tiny llama's (seed 0) top-1 after "The Space Needle is located in"
    fl.factset("geo", KNOWN)
    result = fl.run("--fl-json", "results.json", "-k", "needle or aggregate")
    result.assert_outcomes(passed=2)
    facts = {f["id"]: f for f in fl.results()["factsets"][0]["facts"]}
    assert facts["needle"]["status"] == "traced" and facts["needle"]["status_reason"] == ""
    assert facts["needle"]["trace"]["top_token"] == " city"
    assert facts["colosseum"]["status"] == facts["toyota"]["status"] == "unknown"
    assert fl.results()["factsets"][0]["aggregate"]["n_facts"] == 1
    assert fl.traced() == ["needle"]
    # a floor on p_clean makes it unknown again
    fl.factset("geo", KNOWN.replace("unknown: skip", "unknown: skip\nmin_p_clean: 0.99"))
    result = fl.run("-rs", "-k", "needle")
    result.stdout.fnmatch_lines(["*unknown fact needle: model predicts the target ' city' but with p=0.* < min_p_clean 0.99"])


def test_second_run_recomputes_nothing(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "results.json").assert_outcomes(passed=3, xfailed=1)
    assert sorted(fl.traced()) == ["colosseum", "toyota"]
    first = fl.results()
    result = fl.run("--fl-json", "results.json")
    result.assert_outcomes(passed=3, xfailed=1)
    result.stdout.fnmatch_lines(["fact-locator: 0 facts traced, 2 from the cache*"])
    assert sorted(fl.traced()) == ["colosseum", "toyota"]  # nothing new
    second = fl.results()
    strip = lambda d: [{**f["trace"], "timings": None} for f in d["factsets"][0]["facts"]]  # noqa: E731
    assert strip(first) == strip(second)
    # --fl-no-cache traces again
    fl.run("--fl-no-cache").assert_outcomes(passed=3, xfailed=1)
    assert len(fl.traced()) == 4


def test_interrupted_run_resumes_where_it_stopped(fl, monkeypatch):
    fl.factset("geo", GEO)
    monkeypatch.setenv("FL_INTERRUPT_AFTER", "1")
    result = fl.run_subprocess()
    assert result.ret == 2  # interrupted
    assert fl.traced() == ["colosseum"]
    monkeypatch.delenv("FL_INTERRUPT_AFTER")
    fl.run("--fl-json", "results.json").assert_outcomes(passed=3, xfailed=1)
    assert fl.traced() == ["colosseum", "toyota"]  # only the rest was traced


def test_aggregate_under_k_traces_the_deselected_facts(fl):
    fl.factset("geo", GEO)
    result = fl.run("-k", "aggregate", "--fl-json", "results.json")
    result.assert_outcomes(passed=1)
    assert sorted(fl.traced()) == ["colosseum", "toyota"]
    geo = fl.results()["factsets"][0]
    assert all(f["trace"] is not None for f in geo["facts"])
    assert geo["aggregate"]["n_facts"] == 2
    fl.run("-k", "toyota").assert_outcomes(passed=1)
    assert sorted(fl.traced()) == ["colosseum", "toyota"]  # from the cache


def test_junit_xml_has_trace_properties(fl):
    fl.factset("geo", GEO)
    fl.run("--junitxml", "junit.xml", "-o", "junit_family=xunit1")
    root = ET.parse(fl.pytester.path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["te"].iter("property")}
    assert set(props) >= {"te", "p_clean", "peak_hidden", "peak_mlp", "peak_attn"}
    assert props["peak_mlp"].startswith("L") and " T" in props["peak_mlp"]
    agg_props = {p.get("name"): p.get("value") for p in cases["ate"].iter("property")}
    assert agg_props["n_facts"] == "2"


def test_results_json_has_model_settings_versions_times(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "out/results.json")
    data = fl.results("out/results.json")
    assert data["kind"] == "fact-locator-results"
    assert data["model"]["name"] == "tiny-llama" and data["model"]["n_layers"] == 2
    assert {"fact_locator", "torch", "transformers", "pytest"} <= set(data["versions"])
    assert data["started_at"] <= data["finished_at"]
    outcomes = [o["outcome"] for f in data["factsets"][0]["facts"] for o in f["outcomes"]]
    assert sorted(outcomes) == ["passed", "passed", "xfailed"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_xdist_two_workers_merge_into_one_results_file(fl):
    pytest.importorskip("xdist")
    fl.factset("geo", GEO)
    fl.factset("geo2", GEO.replace("name: geo", "name: geo2").replace("Toyota", "Honda"))
    result = fl.run_subprocess("-n", "2", "--fl-json", "results.json", timeout=180)
    result.assert_outcomes(passed=6, xfailed=2)
    assert result.stdout.str().count("fact set geo (factsets/geo.yaml)") == 1  # one summary, the controller's
    data = fl.results()
    by_name = {fs["name"]: fs for fs in data["factsets"]}
    assert set(by_name) == {"geo", "geo2"}
    for fs in by_name.values():
        assert fs["aggregate"] is not None and fs["aggregate"]["n_facts"] == 2
        assert [o["nodeid"].split("::")[-1] for o in fs["outcomes"]] == ["ate"]
        assert all(f["trace"] is not None for f in fs["facts"])
        assert sum(len(f["outcomes"]) for f in fs["facts"]) == 3
    assert data["model"]["name"] == "tiny-llama"


SAME_SHAPE = """\
name: landmarks
unknown: trace
facts:
  - id: colosseum
    subject: The Colosseum
    relation: "{} is located in the country of"
    target: Italy
  - id: parthenon
    subject: The Parthenon
    relation: "{} is located in the country of"
    target: Greece
  - id: big-ben
    subject: The Big Ben
    relation: "{} is located in the country of"
    target: England
  - id: fuji
    subject: Mount Fuji
    relation: "{} is located in the country of"
    target: Japan
"""


def traced_together(data: dict) -> dict[str, float]:
    """Fact id -> how many facts its trace shared restoration forwards with (itself included)."""
    return {f["id"]: f["trace"]["timings"]["facts_together"] for f in data["factsets"][0]["facts"] if f["trace"]}


def test_selected_facts_of_one_prompt_shape_are_traced_together(fl):
    """The first three prompts tokenize to the same shape (15 tokens, subject 0..8) with the
    tiny tokenizer: the first item traces the other selected one of them with it, and its
    own item then finds the trace ready. A deselected fact is not traced."""
    fl.factset("landmarks", SAME_SHAPE)
    fl.run("-k", "not parthenon", "--fl-json", "results.json").assert_outcomes(passed=3)
    assert fl.traced() == ["colosseum", "big-ben", "fuji"]
    assert traced_together(fl.results()) == {"colosseum": 2.0, "big-ben": 2.0, "fuji": 1.0}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_xdist_loadfile_keeps_a_set_together_and_traces_each_fact_once(fl):
    pytest.importorskip("xdist")
    fl.factset("landmarks", SAME_SHAPE)
    result = fl.run_subprocess("-n", "2", "--dist", "loadfile", "--fl-json", "results.json", timeout=180)
    result.assert_outcomes(passed=4)
    assert sorted(fl.traced()) == ["big-ben", "colosseum", "fuji", "parthenon"]
    assert traced_together(fl.results()) == {"colosseum": 3.0, "parthenon": 3.0, "big-ben": 3.0, "fuji": 1.0}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_xdist_loadgroup_never_traces_a_fact_twice(fl):
    """Where xdist groups by marks, the set stays on one worker and its facts are traced
    together; where it cannot (pytest 9.2 with pytest-xdist 3.8 spreads the items), each
    worker traces only its own facts. Either way each fact is traced once."""
    pytest.importorskip("xdist")
    fl.factset("landmarks", SAME_SHAPE)
    result = fl.run_subprocess("-n", "2", "--dist", "loadgroup", "--fl-json", "results.json", timeout=180)
    result.assert_outcomes(passed=4)
    assert sorted(fl.traced()) == ["big-ben", "colosseum", "fuji", "parthenon"]
    together = traced_together(fl.results())
    assert together in ({"colosseum": 3.0, "parthenon": 3.0, "big-ben": 3.0, "fuji": 1.0},
                        {"colosseum": 1.0, "parthenon": 1.0, "big-ben": 1.0, "fuji": 1.0})
