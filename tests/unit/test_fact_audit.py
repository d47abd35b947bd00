"""Which facts run their `samples: auto` rounds together in the plugin
(`fact_locator.plugin.fact_audit.round_mates`), with a stand-in session: the first fact of a
set traced takes every later fact the session traces; each fact's rounds run once; under
xdist with a set's items spread over workers, none (each worker runs its own facts' rounds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fact_locator.factset import parse_factset
from fact_locator.plugin.fact_audit import round_mates

SET = parse_factset("""
unknown: trace
facts:
  - {id: a, subject: The Colosseum, relation: "{} is in", target: Italy}
  - {id: b, subject: The Louvre, relation: "{} is in", target: France}
  - {id: c, subject: Toyota, relation: "{} is in", target: Japan}
""", "set.yaml")


@dataclass
class StandInLocator:
    auto: bool = True

    def adaptive_max(self, factset: Any) -> int | None:
        return 64 if self.auto else None


@dataclass
class StandInSession:
    """The parts of `FactLocatorSession` that `round_mates` reads."""

    locator: StandInLocator = field(default_factory=StandInLocator)
    sets_stay_together: bool = True
    selected_facts: dict[str, set[str]] = field(default_factory=lambda: {"set.yaml": {"a", "b", "c"}})
    rounds_done: set[tuple[str, str]] = field(default_factory=set)

    def relpath(self, path: Any) -> str:
        return str(path)

    def unknown_rule(self, factset: Any) -> str:
        return "trace"


def ids(fl: StandInSession, fact_id: str, every: bool = False) -> list[str]:
    return [spec.id for spec in round_mates(fl, SET, SET.fact(fact_id), every)]  # type: ignore[arg-type]


def test_the_first_fact_traced_takes_the_later_selected_facts_and_each_fact_runs_its_rounds_once() -> None:
    fl = StandInSession(selected_facts={"set.yaml": {"a", "c"}})
    assert ids(fl, "a") == ["c"]  # b is not selected by this session
    assert ids(fl, "c") == [] and ids(fl, "a") == []  # their rounds have run
    assert ids(fl, "b", every=True) == []  # an aggregate's b: the later ones have run already


def test_an_aggregate_takes_every_later_fact() -> None:
    fl = StandInSession(selected_facts={})
    assert ids(fl, "a", every=True) == ["b", "c"]


def test_no_mates_under_a_fixed_number_of_samples_or_with_a_sets_items_spread_over_xdist_workers() -> None:
    assert ids(StandInSession(locator=StandInLocator(auto=False)), "a") == []
    spread = StandInSession(sets_stay_together=False)
    assert ids(spread, "a") == [] and ids(spread, "b") == []


def test_mates_are_read_only_once_the_fact_is_traced() -> None:
    fl = StandInSession()
    mates = round_mates(fl, SET, SET.fact("a"))  # type: ignore[arg-type]
    assert fl.rounds_done == set()  # an unknown fact never reads them: their own items run their rounds
    list(mates)
    assert fl.rounds_done == {("set.yaml", "a"), ("set.yaml", "b"), ("set.yaml", "c")}
