"""Fact-set files become pytest nodes:

    factsets/geography.yaml                      FactSetFile
    factsets/geography.yaml::colosseum-country   FactNode (one per fact)
        ...::colosseum-country::mlp-peak         FactItem (one per expectation of the fact)
    factsets/geography.yaml::aggregate           AggregateNode (after the facts)
        ...::aggregate::ate                      AggregateItem (one per aggregate expectation)

A fact with no expectation gets one item named `trace` (the fact is traced and recorded).
`FactSetFiles` (plugin/factset_files.py) lets a Python module collect fact-set files that live
outside the collected directory. The audit's rules (known/unknown, aggregates, severed paths)
are `fact_locator.audit_flow`'s; what an item does with them (trace, record, skip or fail,
and the rounds of `samples: auto`) is `plugin/fact_audit.py`'s; this module makes the nodes.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fact_locator.errors import ExpectationFailed, FactLocatorError, FactSetError
from fact_locator.plugin.fact_audit import aggregate_for, companions, trace_fact
from fact_locator.plugin.factset_files import FactSetFiles
from fact_locator.plugin.session import MESSAGE_KEY, Case, FactLocatorSession, get_session
from fact_locator.plugin.undecided import count_undecided
from fact_locator.plugin.verdict_level import adaptive_looks, confidence_level

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from fact_locator.expectations import ExpectationSpec
    from fact_locator.factset import FactSet, FactSpec

__all__ = [
    "AggregateItem",
    "AggregateNode",
    "CASE_KEY",
    "FactItem",
    "FactNode",
    "FactSetFile",
    "FactSetFiles",
    "aggregate_for",
    "companions",
    "selected_facts",
    "trace_fact",
]

CASE_KEY = pytest.StashKey[Case]()
AGGREGATE_NODE = "aggregate"
TRACE_ONLY = "trace"
BASELINE = "baseline"


def selected_facts(fl: FactLocatorSession, items: Iterable[pytest.Item]) -> dict[str, set[str]]:
    """Relative fact-set path -> ids of the facts this session's items trace."""
    selected: dict[str, set[str]] = {}
    for item in items:
        if isinstance(item, FactItem):
            selected.setdefault(fl.relpath(item.factset.path), set()).add(item.spec.id)
        elif isinstance(item, AggregateItem):
            selected.setdefault(fl.relpath(item.factset.path), set()).update(s.id for s in item.factset.facts)
    return selected


def _xdist_group(config: pytest.Config, name: str) -> list[Any]:
    # With `-n N --dist loadgroup` all items of a fact set go to one worker (no duplicate traces),
    # where xdist can group by marks (not pytest 9.2 with pytest-xdist 3.8: `--dist loadfile` then).
    return [pytest.mark.xdist_group(name=f"factset-{name}")] if config.pluginmanager.hasplugin("xdist") else []


# -- nodes ------------------------------------------------------------------------------------
class FactSetFile(pytest.File):
    """One fact-set YAML file."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        fl = get_session(self.config)
        try:
            factset = fl.factset(self.path)
        except FactSetError as exc:
            raise self.CollectError(str(exc)) from None
        for mark in _xdist_group(self.config, factset.name):
            self.add_marker(mark)
        for tag in factset.tags:
            self.extra_keyword_matches.add(tag)
        for spec in factset.facts:
            yield FactNode.from_parent(self, name=spec.id, factset=factset, spec=spec)
        baseline = fl.baseline_factset(factset)
        if factset.aggregate_expectations or (baseline is not None and baseline.aggregate is not None):
            yield AggregateNode.from_parent(self, name=AGGREGATE_NODE, factset=factset)


class FactNode(pytest.Collector):
    """One fact; its children are its expectations."""

    def __init__(self, *, factset: FactSet, spec: FactSpec, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset
        self.spec = spec
        for tag in spec.fact.tags:
            self.extra_keyword_matches.add(tag)

    def collect(self) -> Iterable[pytest.Item]:
        expectations = self.factset.fact_expectations(self.spec)
        if not expectations:
            yield FactItem.from_parent(self, name=TRACE_ONLY, factset=self.factset, spec=self.spec, expectation=None)
        for name, exp in _unique_names(expectations):
            yield FactItem.from_parent(self, name=name, factset=self.factset, spec=self.spec, expectation=exp)
        if get_session(self.config).baseline_fact(self.factset, self.spec.id) is not None:
            yield BaselineItem.from_parent(self, name=BASELINE, factset=self.factset, spec=self.spec)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.spec.line - 1, f"fact: {self.spec.fact.subject} -> {self.spec.fact.target}"


class AggregateNode(pytest.Collector):
    """The set's aggregate expectations; collected after the facts."""

    def __init__(self, *, factset: FactSet, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset

    def collect(self) -> Iterable[pytest.Item]:
        for name, exp in _unique_names(self.factset.aggregate_expectations):
            yield AggregateItem.from_parent(self, name=name, factset=self.factset, expectation=exp)
        baseline = get_session(self.config).baseline_factset(self.factset)
        if baseline is not None and baseline.aggregate is not None:
            yield AggregateBaselineItem.from_parent(self, name=BASELINE, factset=self.factset)


def _unique_names(specs: Iterable[ExpectationSpec]) -> Iterator[tuple[str, ExpectationSpec]]:
    seen: dict[str, int] = {}
    for exp in specs:
        name = exp.id
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}-{seen[name]}"), exp


class _AuditItem(pytest.Item):
    factset: FactSet
    expectation: ExpectationSpec | None

    def _where(self, line: int) -> str:
        return f"{get_session(self.config).relpath(self.path)}:{line}"

    def _check(self, target: Any, looks: int = 1) -> None:
        """Decide the expectation at the run's confidence level (docs/statistics.md). An
        undecided one counts as --fl-undecided says (fail, xfail or skip); the JUnit property
        fl_verdict says what was decided either way."""
        from fact_locator.expectations import Verdict, decide

        assert self.expectation is not None
        fl = get_session(self.config)
        outcome = decide(self.expectation.expectation, target, level=confidence_level(fl, self.factset), looks=looks)
        if outcome.verdict is Verdict.UNDECIDED:
            count_undecided(self, outcome.message, fl.options["undecided"])
        else:
            self.stash[MESSAGE_KEY] = outcome.message
            self.user_properties.append(("fl_verdict", outcome.verdict.value))
        if not outcome.passed:
            raise ExpectationFailed(outcome.message, outcome)

    def _header(self) -> list[str]:
        return []

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        exc = excinfo.value
        if isinstance(exc, ExpectationFailed):
            lines = self._header()
            if self.expectation is not None:
                lines.append(f"{self._where(self.expectation.line)}: expectation {self.expectation.source}")
            lines.append(str(exc))
            return "\n".join(lines)
        if isinstance(exc, FactLocatorError):
            return "\n".join([*self._header(), f"{type(exc).__name__}: {exc}"])
        return super().repr_failure(excinfo, style=style)


class FactItem(_AuditItem):
    """One (fact, expectation) case."""

    def __init__(self, *, factset: FactSet, spec: FactSpec, expectation: ExpectationSpec | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset
        self.spec = spec
        self.expectation = expectation
        fl = get_session(self.config)
        self.stash[CASE_KEY] = Case(fl.relpath(factset.path), spec.id, expectation.id if expectation else TRACE_ONLY)
        if expectation is not None and expectation.xfail:
            self.add_marker(pytest.mark.xfail(reason=expectation.xfail, strict=False))

    def runtest(self) -> None:
        fl = get_session(self.config)
        trace = trace_fact(fl, self.factset, self.spec, self)
        if self.expectation is None:
            self.stash[MESSAGE_KEY] = f"traced: TE={trace.te:.3f}, p_clean={trace.p_clean:.3f}"
            return
        self._check(trace, looks=adaptive_looks(fl, self.factset))

    def _header(self) -> list[str]:
        fact = self.spec.fact
        return [f"{self._where(self.spec.line)}: fact {self.spec.id}: {fact.subject} -> {fact.target.strip()}"]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.spec.line - 1, f"fact: {self.spec.fact.subject} -> {self.spec.fact.target}"


class AggregateItem(_AuditItem):
    """One aggregate expectation of a set, over all of its known facts."""

    def __init__(self, *, factset: FactSet, expectation: ExpectationSpec, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset
        self.expectation = expectation
        fl = get_session(self.config)
        self.stash[CASE_KEY] = Case(fl.relpath(factset.path), None, expectation.id, aggregate=True)
        if expectation.xfail:
            self.add_marker(pytest.mark.xfail(reason=expectation.xfail, strict=False))

    def runtest(self) -> None:
        fl = get_session(self.config)
        agg = aggregate_for(fl, self.factset)
        self.user_properties.extend([("ate", f"{agg.ate:.4f}"), ("n_facts", str(agg.n_facts))])
        self._check(agg)

    def _header(self) -> list[str]:
        return [f"{self._where(self.factset.line)}: fact set {self.factset.name} (aggregate)"]

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.expectation.line if self.expectation is not None else self.factset.line
        return self.path, line - 1, f"fact set: {self.factset.name} (aggregate {self.name})"


class BaselineItem(_AuditItem):
    """--fl-baseline: the fact's trace against the baseline run's (BaselineRule.fact_failures)."""

    def __init__(self, *, factset: FactSet, spec: FactSpec, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset
        self.spec = spec
        self.expectation = None
        fl = get_session(self.config)
        self.stash[CASE_KEY] = Case(fl.relpath(factset.path), spec.id, BASELINE)

    def runtest(self) -> None:
        from fact_locator.compare import compare_traces

        fl = get_session(self.config)
        trace = trace_fact(fl, self.factset, self.spec, self)
        before = fl.baseline_fact(self.factset, self.spec.id)
        assert before is not None and before.trace is not None
        rule = fl.baseline_rule()
        comparison = compare_traces(self.factset.name, self.spec.id, before.trace, trace, rule.level)
        peaks = ", ".join(f"{p.kind} L{p.layer_before}->L{p.layer_after}" for p in comparison.peaks)
        summary = f"TE {comparison.te_before:.3f} -> {comparison.te_after:.3f}; peaks {peaks}"
        _baseline_verdict(self, rule.fact_findings(comparison), summary)

    def _header(self) -> list[str]:
        fact = self.spec.fact
        where = get_session(self.config).options["baseline"]
        return [f"{self._where(self.spec.line)}: fact {self.spec.id}: {fact.subject} -> {fact.target.strip()} "
                f"against the baseline {where}"]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.spec.line - 1, f"fact: {self.spec.fact.subject} -> {self.spec.fact.target} (baseline)"


def _baseline_verdict(item: pytest.Item, findings: list[Any], summary: str) -> None:
    """Record the baseline check's message on the item (with what it found within noise);
    raise when the rule is broken."""
    failures = [f.message for f in findings if f.called]
    notes = "".join(f"; {f.message}" for f in findings if not f.called)
    if failures:
        item.stash[MESSAGE_KEY] = message = f"baseline: {'; '.join(failures)} ({summary}{notes})"
        raise ExpectationFailed(message)
    item.stash[MESSAGE_KEY] = f"baseline: holds ({summary}{notes})"


class AggregateBaselineItem(_AuditItem):
    """--fl-baseline: the set's ATE against the baseline run's (BaselineRule.set_failures)."""

    def __init__(self, *, factset: FactSet, **kwargs: Any):
        super().__init__(**kwargs)
        self.factset = factset
        self.expectation = None
        fl = get_session(self.config)
        self.stash[CASE_KEY] = Case(fl.relpath(factset.path), None, BASELINE, aggregate=True)

    def runtest(self) -> None:
        from fact_locator.compare import compare_aggregates

        fl = get_session(self.config)
        agg = aggregate_for(fl, self.factset)
        before = fl.baseline_factset(self.factset)
        assert before is not None and before.aggregate is not None
        rule = fl.baseline_rule()
        # The noise of each fact traced in both runs (aggregate_for recorded this run's traces).
        now = fl.builder.factset(fl.relpath(self.factset.path), self.factset).facts
        pairs = [(f.trace, now[f.id].trace) for f in before.facts
                 if f.trace is not None and f.id in now and now[f.id].trace is not None]
        comparison = compare_aggregates(self.factset.name, before.aggregate, agg, (), pairs, rule.level)
        summary = f"ATE {before.aggregate.ate:.3f} -> {agg.ate:.3f} over {agg.n_facts} fact(s)"
        _baseline_verdict(self, rule.set_findings(comparison), summary)

    def _header(self) -> list[str]:
        return [f"{self._where(self.factset.line)}: fact set {self.factset.name} (aggregate) against the baseline "
                f"{get_session(self.config).options['baseline']}"]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.factset.line - 1, f"fact set: {self.factset.name} (aggregate baseline)"
