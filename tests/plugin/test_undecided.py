"""Undecided verdicts in a pytest run: --fl-undecided fail|xfail|skip, the JUnit property
fl_verdict, the results file, the terminal summary, and the confidence settings.

The threshold is set to the fact's own mean TE (read from a first run), so that its interval
over the noise draws straddles it: an undecided verdict whatever the tiny model's numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fact_locator.tracing.trace import Trace

FACT = """\
name: open
unknown: trace
{settings}
facts:
  - id: colosseum
    subject: The Colosseum
    relation: "{{}} is located in the country of"
    target: Italy
    expect:
      - te: {expectation}
"""


def open_factset(fl, settings: str = "", confidence: str = "") -> float:
    """Write the fact set with `te: ">= <its mean TE>"` and return that TE."""
    fl.factset("open", FACT.format(settings="", expectation='">= -1"'))
    fl.run("--fl-json", "first.json")
    trace = Trace.from_dict(fl.results("first.json")["factsets"][0]["facts"][0]["trace"])
    assert trace.te_se() and trace.te_se() > 0  # the draws differ: the interval has a width
    threshold = f'{{min: {trace.te!r}{confidence}}}'
    fl.factset("open", FACT.format(settings=settings, expectation=threshold))
    return trace.te


def verdicts(fl, name: str = "results.json") -> list[dict]:
    return [o for f in fl.results(name)["factsets"][0]["facts"] for o in f["outcomes"]]


@pytest.mark.parametrize(("counted", "pytest_outcome"), [("fail", "failed"), ("xfail", "xfailed"), ("skip", "skipped")])
def test_an_undecided_verdict_counts_as_fl_undecided_says(fl, counted: str, pytest_outcome: str) -> None:
    open_factset(fl)
    result = fl.run("--fl-undecided", counted, "--fl-json", "results.json", "--junitxml", "junit.xml", "-rA")
    result.assert_outcomes(**{pytest_outcome: 1})
    result.stdout.fnmatch_lines(["*te: TE = * expected TE >= *: undecided at 95% after 2 samples: TE * [[]*, *[]]*"])
    [outcome] = verdicts(fl)
    assert outcome["outcome"] == "undecided" and outcome["counted_as"] == pytest_outcome
    assert "undecided at 95% after 2 samples" in outcome["message"]
    properties = {p.get("name"): p.get("value") for p in ET.parse(fl.path / "junit.xml").iter("property")}
    assert properties["fl_verdict"] == "undecided"


def test_the_default_counts_undecided_as_a_failure_and_the_summary_shows_it(fl) -> None:
    open_factset(fl)
    result = fl.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UNDECIDED colosseum te: te: TE = *", "*undecided at 95% after 2 samples*", "fact-locator: 1 undecided"])


def test_a_lower_confidence_on_the_command_line_changes_the_message_level(fl) -> None:
    open_factset(fl)
    result = fl.run("--fl-confidence", "0.6", "-rA")
    result.stdout.fnmatch_lines(["*undecided at 60% after 2 samples*"])


def test_the_fact_sets_confidence_and_the_expectations_own(fl) -> None:
    open_factset(fl, settings="settings: {confidence: 0.7}")
    fl.run("--fl-json", "results.json")
    assert "undecided at 70%" in verdicts(fl)[0]["message"]
    open_factset(fl, settings="settings: {confidence: 0.7}", confidence=", confidence: 0.8")
    fl.run("--fl-json", "results.json")
    assert "undecided at 80%" in verdicts(fl)[0]["message"]


def test_a_decided_verdict_records_its_verdict_property(fl) -> None:
    fl.factset("open", FACT.format(settings="", expectation='">= -1"'))
    result = fl.run("--junitxml", "junit.xml")
    result.assert_outcomes(passed=1)
    properties = {p.get("name"): p.get("value") for p in ET.parse(fl.path / "junit.xml").iter("property")}
    assert properties["fl_verdict"] == "passed"


@pytest.mark.parametrize("value", ["0", "1.5", "high"])
def test_a_bad_confidence_is_one_line_naming_the_value(fl, value: str) -> None:
    fl.factset("open", FACT.format(settings="", expectation='">= -1"'))
    result = fl.run("--fl-confidence", value)
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*--fl-confidence*{value}*"])


def test_a_bad_confidence_in_the_ini_and_the_fact_set_names_the_key(fl) -> None:
    fl.factset("open", FACT.format(settings="", expectation='">= -1"'))
    fl.ini(fl_confidence="high")
    result = fl.run()
    assert result.ret != 0
    assert "fl_confidence = 'high'" in result.stdout.str() + result.stderr.str()
    fl.ini()
    fl.factset("open", FACT.format(settings="settings: {confidence: 1.5}", expectation='">= -1"'))
    result = fl.run()
    assert result.ret != 0
    assert "open.yaml:3: settings.confidence: a confidence level is between 0 and 1 (e.g. 0.95), got 1.5" in result.stdout.str() + result.stderr.str()


# -- Python audits: assert_expectation ----------------------------------------------------------
TWO_FACTS = FACT.format(settings="", expectation='">= -1"') + """\
  - id: toyota
    subject: Toyota
    relation: "{} was founded in the country of"
    target: Japan
"""

PY_AUDIT = """
import pytest
from fact_locator.expectations import assert_expectation, ate_at_least, max_aie_greater

@pytest.mark.factset("factsets/open.yaml")
def test_ate_at_its_own_value(aggregate):
    # The threshold is the measured ATE: the interval over facts and draws straddles it.
    assert_expectation(ate_at_least(aggregate.ate), aggregate)

@pytest.mark.factset("factsets/open.yaml")
def test_a_curve_beats_itself(aggregate):
    assert_expectation(max_aie_greater("mlp", "last_subject", "mlp", "last_subject"), aggregate)
"""


@pytest.mark.parametrize(("counted", "pytest_outcome"), [("fail", "failed"), ("xfail", "xfailed"), ("skip", "skipped")])
def test_an_undecided_assert_expectation_counts_as_fl_undecided_says(fl, counted: str, pytest_outcome: str) -> None:
    fl.factset("open", TWO_FACTS)
    fl.pytester.makepyfile(test_audit=PY_AUDIT)
    result = fl.run("test_audit.py", "-k", "own_value", "--fl-undecided", counted, "--fl-json", "results.json",
                    "--junitxml", "junit.xml", "-rA")
    result.assert_outcomes(**{pytest_outcome: 1})
    result.stdout.fnmatch_lines(["*ate: ATE = * over 2 facts; expected >= *: undecided at 95% after 2 facts: [[]*"])
    [outcome] = fl.results("results.json")["factsets"][0]["outcomes"]
    assert outcome["outcome"] == "undecided" and outcome["counted_as"] == pytest_outcome
    assert "undecided at 95% after 2 facts" in outcome["message"]
    properties = {p.get("name"): p.get("value") for p in ET.parse(fl.path / "junit.xml").iter("property")}
    assert properties["fl_verdict"] == "undecided"


def test_assert_expectation_decides_at_the_runs_confidence_and_shows_max_aie_decided(fl) -> None:
    fl.factset("open", TWO_FACTS)
    fl.pytester.makepyfile(test_audit=PY_AUDIT)
    result = fl.run("test_audit.py", "--fl-confidence", "0.6")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*ExpectationUndecided: ate: * undecided at 60% after 2 facts*"])
    result.stdout.fnmatch_lines(["*ExpectationFailed: max-aie-mlp-last_subject-gt-mlp-last_subject: * with probability "
                                 "0.000 over 2000 replicates: does not hold at 60% after 2 facts*"])
