"""The expectation-kind registry: it lists exactly the documented kinds with their scopes,
and a kind written in one new module is read from a fact set and checked like the others."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.trace_factory import make_trace

from fact_locator.errors import FactSetError
from fact_locator.expectations import check, parse_expectation, register_kind, registered_kinds, unregister_kind
from fact_locator.factset import parse_factset

DOCS = Path(__file__).resolve().parents[2] / "docs" / "factsets.md"
SECTIONS = {"fact": "### Per-fact expectations", "aggregate": "### Aggregate expectations"}


def documented_forms() -> list[tuple[str, str, str]]:
    """(scope, name, YAML item) of each row of the two expectation tables in docs/factsets.md."""
    text = DOCS.read_text(encoding="utf-8")
    forms = []
    for scope, heading in SECTIONS.items():
        section = text.split(heading, 1)[1].split("\n#", 1)[0]
        for item in re.findall(r"^\| `(- [a-z-]+: [^`]+)`", section, flags=re.M):
            forms.append((scope, item[2:].split(":", 1)[0], item[2:]))
    return forms


def test_the_registry_lists_every_documented_kind_with_its_scope():
    documented = {(scope, name) for scope, name, _ in documented_forms()}
    registered = {(entry.scope, entry.name) for entry in registered_kinds()}
    assert registered == documented
    assert [e.name for e in registered_kinds("fact")] == [
        "hidden-peak", "mlp-peak", "attn-peak", "peak-layer", "te", "ie", "stronger"]
    assert [e.name for e in registered_kinds("aggregate")] == ["ate", "aie", "max-aie"]


@pytest.mark.parametrize(("scope", "name", "item"), documented_forms())
def test_each_documented_form_builds_its_registered_class(scope, name, item):
    import yaml

    entry = {e.name: e for e in registered_kinds()}[name]
    spec = parse_expectation(yaml.safe_load(item), "docs.yaml", 1, scope)
    assert type(spec.expectation) is entry.cls and spec.expectation.scope == entry.scope == scope


TOY_KIND = '''
"""`p-clean`: the clean probability of the target reaches a minimum."""
from dataclasses import dataclass, field
from typing import Any

from fact_locator.expectations import ArgumentError, ExpectationBase, Outcome, register_kind


@dataclass(frozen=True)
class PCleanAtLeast(ExpectationBase):
    minimum: float
    scope: str = field(default="fact", init=False)

    @property
    def default_id(self) -> str:
        return "p-clean"

    @property
    def description(self) -> str:
        return f"P(o) >= {self.minimum}"

    def check(self, target: Any) -> Outcome:
        passed = target.p_clean >= self.minimum
        return Outcome(passed, f"{self.id}: P(o) = {target.p_clean:.3f}; expected >= {self.minimum}",
                       {"p_clean": target.p_clean})


def parse(value: Any) -> PCleanAtLeast:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"takes a number such as 0.5, got {value!r}")
    return PCleanAtLeast(float(value))


register_kind("p-clean", "fact", parse, PCleanAtLeast)
'''


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    """The toy kind's module, written to a file of its own and imported; forgotten afterwards."""
    (tmp_path / "toy_kind.py").write_text(textwrap.dedent(TOY_KIND), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_kind")
    yield module
    unregister_kind("p-clean")
    sys.modules.pop("toy_kind", None)


FACT = '  - subject: The Colosseum\n    relation: "{} is in"\n    target: Italy\n'


def test_a_kind_in_one_new_module_is_read_from_a_fact_set_and_checked(toy_kind):
    fs = parse_factset(f"expect:\n  - p-clean: 0.5\nfacts:\n{FACT}    expect:\n      - p-clean: 0.9\n", "toy.yaml")
    (spec,) = fs.fact_expectations(fs.facts[0])  # the fact's own replaces the set's (same id)
    assert type(spec.expectation) is toy_kind.PCleanAtLeast and spec.line == 8 and spec.source == "p-clean: 0.9"
    outcome = check(spec.expectation, make_trace(p_clean=0.75))
    assert not outcome.passed and outcome.message == "p-clean: P(o) = 0.750; expected >= 0.9"
    assert check(fs.expectations[0].expectation, make_trace(p_clean=0.75)).passed

    with pytest.raises(FactSetError) as info:  # its own errors get the file, line and name
        parse_factset(f"expect:\n  - p-clean: high\nfacts:\n{FACT}", "toy.yaml")
    assert str(info.value) == "toy.yaml:2: p-clean: takes a number such as 0.5, got 'high'"
    with pytest.raises(FactSetError, match="put it under 'expect:'"):
        parse_factset(f"aggregate:\n  - p-clean: 0.5\nfacts:\n{FACT}", "toy.yaml")


def test_register_kind_refuses_a_taken_name_a_wrong_scope_and_a_meta_key(toy_kind):
    with pytest.raises(ValueError, match="already registered"):
        register_kind("p-clean", "fact", toy_kind.parse, toy_kind.PCleanAtLeast)
    with pytest.raises(ValueError, match="has scope 'fact'"):
        register_kind("p-clean-2", "aggregate", toy_kind.parse, toy_kind.PCleanAtLeast)
    with pytest.raises(ValueError, match="lower-case words"):
        register_kind("xfail", "fact", toy_kind.parse, toy_kind.PCleanAtLeast)


def test_without_the_toy_module_its_name_is_unknown():
    with pytest.raises(FactSetError, match="unknown per-fact expectation 'p-clean'"):
        parse_expectation({"p-clean": 0.5}, "toy.yaml", 2, "fact")
