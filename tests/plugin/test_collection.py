"""Collection: node ids, order, reportinfo, broken files, xfail marks, Python audits."""

from __future__ import annotations

from tests.support.pytester_harness import GEO

BROKEN = """\
name: broken
facts:
  - subject: Paris
    relation: "{} is the capital of"
    target: France
    expect:
      - mlp-peek: last_subject
"""


def test_node_ids_one_item_per_fact_and_expectation_aggregates_last(fl):
    fl.factset("geo", GEO)
    result = fl.run("--collect-only", "-q")
    assert result.ret == 0
    lines = [line for line in result.stdout.lines if line.startswith("factsets/")]
    assert lines == [
        "factsets/geo.yaml::colosseum::te",
        "factsets/geo.yaml::colosseum::hidden-peak",
        "factsets/geo.yaml::toyota::te",
        "factsets/geo.yaml::aggregate::ate",
    ]


def test_collect_only_does_not_load_the_model(fl):
    fl.factset("geo", GEO)
    result = fl.run("--collect-only", "--fl-model", "python:fl_tiny:broken")
    assert result.ret == 0


def test_only_files_matching_the_glob_are_fact_sets(fl):
    fl.factset("geo", GEO)
    (fl.pytester.path / "other.yaml").write_text("just: data\n")
    result = fl.run("--collect-only", "-q")
    assert "other.yaml" not in result.stdout.str()
    result = fl.run("--collect-only", "-q", "--fl-factsets", "other.yaml")
    result.stdout.fnmatch_lines(["*other.yaml:1: not a fact set: it has no 'facts:' list*"])
    assert "factsets/geo.yaml::" not in result.stdout.str()


def test_broken_file_is_a_collection_error_with_its_line_and_others_still_run(fl):
    fl.factset("geo", GEO)
    fl.factset("broken", BROKEN)
    result = fl.run("-rA")
    result.stdout.fnmatch_lines([
        "*ERROR collecting factsets/broken.yaml*",
        "factsets/broken.yaml:7: unknown per-fact expectation 'mlp-peek'; did you mean 'mlp-peak'?*",
    ])
    assert "Traceback" not in result.stdout.str()
    result.assert_outcomes(passed=3, xfailed=1, errors=1)
    assert result.ret == 2  # pytest's code for collection errors, not 1 (an audit failed)


def test_failure_shows_path_line_and_the_expectation_message(fl):
    fl.factset("geo", GEO.replace('- te: ">= -1"', '- te: ">= 0.5"'))
    result = fl.run()
    result.stdout.fnmatch_lines([
        "*_ fact: Toyota -> Japan _*",
        "factsets/geo.yaml:15: fact toyota: Toyota -> Japan",
        "factsets/geo.yaml:5: expectation te: \">= 0.5\"",
        "te: TE = * expected TE >= 0.500*",
    ])
    result.assert_outcomes(failed=2, passed=1, xfailed=1)


def test_xfail_expectation_gets_a_non_strict_xfail_marker(fl):
    fl.factset("geo", GEO)
    result = fl.run("-rx", "-k", "hidden")
    result.stdout.fnmatch_lines(["XFAIL factsets/geo.yaml::colosseum::hidden-peak - tiny random model"])


PY_AUDIT = """
import pytest
from fact_locator.expectations import assert_expectation, te_at_least

@pytest.mark.factset("factsets/geo.yaml")
def test_te(fact, trace):
    assert trace.subject == fact.subject
    assert_expectation(te_at_least(-1), trace)

@pytest.mark.factset("factsets/geo.yaml")
def test_whole_set(aggregate, factset):
    assert aggregate.n_facts == len(factset.facts) == 2

@pytest.mark.factset("factsets/missing.yaml")
def test_missing(fact):
    pass
"""


def test_python_audits_are_parametrized_over_the_facts(fl):
    fl.factset("geo", GEO)
    fl.pytester.makepyfile(test_audit=PY_AUDIT)
    result = fl.run("test_audit.py", "-v", "--fl-json", "results.json")
    result.stdout.fnmatch_lines([
        "*test_audit.py::test_te?colosseum? PASSED*",
        "*test_audit.py::test_te?toyota? PASSED*",
        "*test_audit.py::test_whole_set PASSED*",
        "*test_audit.py::test_missing?factset-error? ERROR*",
        "*factsets/missing.yaml: cannot read the fact set*",
    ])
    data = fl.results()
    geo = data["factsets"][0]
    assert [o["nodeid"] for o in geo["facts"][0]["outcomes"]] == ["test_audit.py::test_te[colosseum]"]
    assert [o["nodeid"] for o in geo["outcomes"]] == ["test_audit.py::test_whole_set"]
    assert geo["aggregate"]["n_facts"] == 2


def test_factset_files_object_collects_fact_sets_from_elsewhere(fl):
    fl.factset("geo", GEO)
    audits = fl.pytester.mkdir("audits")
    (audits / "test_factsets.py").write_text(
        "from fact_locator.plugin.collection import FactSetFiles\nfactsets = FactSetFiles('../factsets/*.yaml')\n")
    result = fl.run("audits", "--collect-only", "-q")
    assert "factsets/geo.yaml::aggregate::ate" in result.stdout.str()
    # reached twice (its folder and the FactSetFiles): collected once
    result = fl.run("audits", "factsets", "--collect-only", "-q")
    assert result.stdout.str().count("factsets/geo.yaml::aggregate::ate") == 1
