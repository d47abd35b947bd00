"""An undecided verdict in the reports: the terminal summary and the HTML report show it
apart from failures, with its numbers and how pytest counted it."""

from __future__ import annotations

from dataclasses import replace

from tests.support.report_fixtures import audit, make_results

from fact_locator.report import render_html, write_summary
from fact_locator.report.outcomes import fact_outcome

MESSAGE = "te: TE = 0.210; expected TE >= 0.200: undecided at 95% after 64 samples: TE 0.210 [0.170, 0.250]"


def results_with_an_undecided_verdict():
    results = make_results()
    fact = results.factsets[0].facts[0]
    fact.outcomes = [o for o in fact.outcomes if o.outcome == "passed"]
    fact.outcomes.append(replace(audit(fact.id, "te-open", "undecided", MESSAGE), counted_as="xfailed"))
    return results, fact


def test_a_facts_outcome_is_undecided_ahead_of_passes() -> None:
    _, fact = results_with_an_undecided_verdict()
    assert fact_outcome(fact) == "undecided"


def test_the_terminal_summary_lists_it_with_its_numbers_and_how_it_counted() -> None:
    results, fact = results_with_an_undecided_verdict()
    text = write_summary(results, color=False, width=400)
    assert f"UNDECIDED {fact.id} te-open: {MESSAGE} (counted as xfailed)" in text
    assert results.counts()["undecided"] == 1


def test_the_html_report_shows_it_with_its_numbers() -> None:
    results, _ = results_with_an_undecided_verdict()
    html = render_html(results, rendered_at="2025-01-01T12:00:00+00:00")
    assert "<span class=\"o o-undecided\">undecided</span>" in html
    assert "undecided at 95% after 64 samples: TE 0.210 [0.170, 0.250]" in html
    assert "(counted as xfailed)" in html
