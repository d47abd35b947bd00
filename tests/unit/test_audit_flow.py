"""The audit's rules (fact_locator.audit_flow), with a stand-in Locator: when a fact is known,
what skip/fail/trace do with an unknown one, which facts enter the aggregate, severed paths once."""

from __future__ import annotations

import pytest

from fact_locator.audit_flow import (
    CleanCheck,
    aggregate_verdicts,
    audit_fact,
    enters_aggregate,
    is_known,
    severed_once,
    traced_reason,
    will_trace,
)
from fact_locator.errors import FactError
from fact_locator.factset import parse_factset
from tests.support.trace_factory import make_trace

GEO = parse_factset(
    """
min_p_clean: 0.5
facts:
  - {id: known, subject: The Colosseum, relation: "{} is in", target: Italy}
  - {id: unsure, subject: The Louvre, relation: "{} is in", target: France}
  - {id: wrong, subject: Toyota, relation: "{} is in", target: Japan}
  - {id: broken, subject: Honda, relation: "{} is in", target: Japan}
""", "geo.yaml")


class StandInLocator:
    """Answers the clean check from a table, 'traces' by handing out a made-up trace, and
    counts what it was asked."""

    CLEAN = {"The Colosseum": (" Italy", 0.9), "The Louvre": (" France", 0.3), "Toyota": (" Tokyo", 0.6)}

    def __init__(self) -> None:
        self.traced: list[str] = []
        self.severed_for: list[str] = []

    def clean(self, fact, factset):
        if fact.subject not in self.CLEAN:
            raise FactError(f"fact {fact.subject!r}: cannot tokenize")
        top, p = self.CLEAN[fact.subject]
        target = " " + fact.target
        return CleanCheck(top, p, target, p if top == target else 0.01, factset.min_p_clean)

    def trace(self, fact, factset, companions=()):
        if fact.subject not in self.CLEAN:
            raise FactError(f"fact {fact.subject!r}: cannot tokenize")
        self.traced.append(fact.subject)
        top, p = self.CLEAN[fact.subject]
        return make_trace(subject=fact.subject, target=fact.target, target_token=" " + fact.target, top_token=top,
                          p_clean=p if top == " " + fact.target else 0.01)

    def adaptive_max(self, factset):
        return None  # a fixed number of samples

    def severed(self, fact, factset):
        self.severed_for.append(fact.subject)
        return f"severed {fact.subject}"


def spec(fact_id):
    return next(s for s in GEO.facts if s.id == fact_id)


def test_known_is_top1_and_the_floor():
    assert is_known(True, 0.6, 0.5) and is_known(True, 0.5, 0.5)
    assert not is_known(False, 0.9, 0.0)
    assert not is_known(True, 0.4, 0.5)


def test_the_clean_check_says_why_a_fact_is_unknown():
    assert CleanCheck(" Italy", 0.9, " Italy", 0.9, 0.5).reason == ""
    assert CleanCheck(" Rome", 0.6, " Italy", 0.2).reason == "model predicts ' Rome' (p=0.60), target ' Italy' has p=0.20"
    assert CleanCheck(" Italy", 0.3, " Italy", 0.3, 0.5).reason == (
        "model predicts the target ' Italy' but with p=0.30 < min_p_clean 0.5")


def test_a_traced_unknown_fact_is_labelled():
    assert traced_reason(make_trace(p_clean=0.75), GEO) == ""
    assert traced_reason(make_trace(p_clean=0.3), GEO) == "traced although unknown: p_clean 0.30 < min_p_clean 0.5"
    assert traced_reason(make_trace(top_token=" Rome"), GEO).startswith("traced although unknown: model predicts ' Rome'")


@pytest.mark.parametrize("rule", ["skip", "fail"])
def test_skip_and_fail_trace_only_known_facts(rule):
    locator = StandInLocator()
    verdicts = {s.id: audit_fact(locator, GEO, s, rule) for s in GEO.facts}
    assert {k: v.status for k, v in verdicts.items()} == {
        "known": "traced", "unsure": "unknown", "wrong": "unknown", "broken": "error"}
    assert locator.traced == ["The Colosseum"]
    assert verdicts["unsure"].reason.endswith("< min_p_clean 0.5") and verdicts["unsure"].clean is not None
    assert "cannot tokenize" in verdicts["broken"].reason and isinstance(verdicts["broken"].error, FactError)


def test_trace_traces_every_fact_without_a_clean_check():
    locator = StandInLocator()
    verdicts = {s.id: audit_fact(locator, GEO, s, "trace") for s in GEO.facts}
    assert {k: v.status for k, v in verdicts.items()} == {
        "known": "traced", "unsure": "traced", "wrong": "traced", "broken": "error"}
    assert verdicts["known"].reason == "" and verdicts["wrong"].reason.startswith("traced although unknown")


@pytest.mark.parametrize("rule, entering", [("skip", ["known"]), ("fail", ["known"]),
                                            ("trace", ["known", "unsure", "wrong"])])
def test_the_aggregate_takes_the_traced_facts(rule, entering):
    asked = []
    verdicts = list(aggregate_verdicts(StandInLocator(), GEO, rule, lambda s: asked.append(s.id) or ()))
    assert [v.spec.id for v in verdicts] == ["known", "unsure", "wrong", "broken"]  # every fact, in file order
    assert asked == ["known", "unsure", "wrong", "broken"]
    assert [v.spec.id for v in verdicts if enters_aggregate(v)] == entering


def test_a_companion_is_one_the_audit_will_trace():
    locator = StandInLocator()
    assert [s.id for s in GEO.facts if will_trace(locator, s.fact, GEO, "skip")] == ["known"]
    assert [s.id for s in GEO.facts if will_trace(locator, s.fact, GEO, "trace")] == ["known", "unsure", "wrong", "broken"]


def test_severed_paths_are_computed_once_per_fact():
    locator, done = StandInLocator(), set()
    assert severed_once(locator, GEO, spec("known"), done, ("geo.yaml", "known")) == "severed The Colosseum"
    assert severed_once(locator, GEO, spec("known"), done, ("geo.yaml", "known")) is None
    assert locator.severed_for == ["The Colosseum"]
