"""ResultsBuilder lays out what the plugin records while items run, in any order, as the
results file has it: facts in the fact set's order, each outcome under its fact, its fact set
or the run."""

from __future__ import annotations

from pathlib import Path

from tests.support.pytester_harness import GEO

from fact_locator.factset import parse_factset
from fact_locator.results import ResultsBuilder, RunResults

GEO_SET = parse_factset(GEO, "factsets/geo.yaml")
OLD = RunResults.load(Path(__file__).parent / "data" / "results_written_before_the_results_package.json")
TRACES = {f.id: f.trace for f in OLD.factsets[0].facts}


def build(builder: ResultsBuilder) -> RunResults:
    return builder.build(model={"spec": "m"}, settings={}, versions={}, started_at="s", finished_at="f")


def test_facts_come_in_the_fact_sets_order_whatever_order_they_were_traced_in():
    builder = ResultsBuilder()
    toyota, colosseum = GEO_SET.fact("toyota"), GEO_SET.fact("colosseum")
    builder.record_fact("factsets/geo.yaml", GEO_SET, toyota, trace=TRACES["toyota"], status="traced")
    builder.record_fact("factsets/geo.yaml", GEO_SET, colosseum, trace=TRACES["colosseum"], status="traced")
    (geo,) = build(builder).factsets
    assert (geo.name, geo.path, geo.description) == ("geo", "factsets/geo.yaml", "two landmarks")
    assert [(f.id, f.subject, f.status) for f in geo.facts] == [("colosseum", "The Colosseum", "traced"),
                                                               ("toyota", "Toyota", "traced")]


def test_each_outcome_goes_under_its_fact_its_fact_set_or_the_run():
    builder = ResultsBuilder()
    builder.record_fact("factsets/geo.yaml", GEO_SET, GEO_SET.fact("toyota"), trace=TRACES["toyota"], status="traced")
    builder.outcome("geo.yaml::toyota::te", "factsets/geo.yaml", "toyota", "te").outcome = "failed"
    builder.outcome("geo.yaml::aggregate::ate", "factsets/geo.yaml", None, "ate")
    builder.outcome("test_x.py::test_plain", "", None, "test_plain").outcome = "skipped"
    results = build(builder)
    (geo,) = results.factsets
    assert [(o.nodeid, o.outcome) for o in geo.facts[0].outcomes] == [("geo.yaml::toyota::te", "failed")]
    assert [(o.nodeid, o.outcome) for o in geo.outcomes] == [("geo.yaml::aggregate::ate", "passed")]
    assert [(o.nodeid, o.outcome) for o in results.outcomes] == [("test_x.py::test_plain", "skipped")]


def test_an_outcome_of_a_fact_never_traced_gets_a_placeholder_fact():
    builder = ResultsBuilder()
    builder.outcome("other.yaml::lost::te", "factsets/other.yaml", "lost", "te").outcome = "error"
    (other,) = build(builder).factsets
    (fact,) = other.facts
    assert (other.name, fact.id, fact.status, fact.status_reason, fact.trace) == ("other", "lost", "error", "not traced", None)


def test_severed_paths_aggregate_and_settings_are_kept_per_fact_set():
    builder = ResultsBuilder()
    colosseum = OLD.factsets[0].facts[0]
    builder.record_severed("factsets/geo.yaml", GEO_SET, GEO_SET.fact("colosseum"), colosseum.severed)
    builder.record_aggregate("factsets/geo.yaml", GEO_SET, OLD.factsets[0].aggregate)
    builder.factset("factsets/geo.yaml", GEO_SET).settings = {"samples": 2}
    (geo,) = build(builder).factsets
    assert geo.facts[0].severed == colosseum.severed
    assert geo.aggregate == OLD.factsets[0].aggregate
    assert builder.factset_settings() == {"factsets/geo.yaml": {"samples": 2}}
