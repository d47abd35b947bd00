"""Compare two runs (two models, or a base model and its fine-tuned or edited version):
where the peak sites moved and how the effects changed; and the baseline rule CI uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fact_locator.errors import ResultsError
from fact_locator.results import FactResult, FactSetResult, RunResults
from fact_locator.tracing.trace import Trace

__all__ = ["BaselineRule", "Comparison", "FactComparison", "PeakShift", "compare_results", "compare_traces", "load_comparable"]


@dataclass(frozen=True)
class PeakShift:
    kind: str
    layer_before: int
    layer_after: int
    category_before: str
    category_after: str
    value_before: float
    value_after: float

    @property
    def layer_shift(self) -> int:
        return self.layer_after - self.layer_before

    @property
    def moved(self) -> bool:
        return self.layer_shift != 0 or self.category_before != self.category_after


@dataclass(frozen=True)
class FactComparison:
    factset: str
    fact_id: str
    te_before: float
    te_after: float
    peaks: tuple[PeakShift, ...]

    @property
    def te_change(self) -> float:
        return self.te_after - self.te_before


@dataclass(frozen=True)
class SetComparison:
    name: str
    ate_before: float | None
    ate_after: float | None
    facts: tuple[FactComparison, ...]


@dataclass(frozen=True)
class Comparison:
    before: str
    after: str
    sets: tuple[SetComparison, ...]
    only_before: tuple[str, ...] = field(default=())
    only_after: tuple[str, ...] = field(default=())


def compare_traces(factset: str, fact_id: str, before: Trace, after: Trace) -> FactComparison:
    """Peaks are compared by layer and by token category (two tokenizers split differently)."""
    peaks = []
    for kind in before.kinds:
        if kind not in after.ie:
            continue
        lb, tb, vb = before.peak(kind)
        la, ta, va = after.peak(kind)
        peaks.append(PeakShift(kind, lb, la, before.categories[tb].value, after.categories[ta].value, vb, va))
    return FactComparison(factset, fact_id, before.te, after.te, tuple(peaks))


def compare_results(before: RunResults, after: RunResults, before_label: str = "before", after_label: str = "after") -> Comparison:
    after_sets = {fs.name: fs for fs in after.factsets}
    sets, only_before = [], []
    for fs in before.factsets:
        other = after_sets.get(fs.name)
        if other is None:
            only_before += [f"{fs.name}::{f.id}" for f in fs.facts]
            continue
        other_facts = {f.id: f for f in other.facts}
        facts = []
        for fact in fs.facts:
            match = other_facts.get(fact.id)
            if match is None:
                only_before.append(f"{fs.name}::{fact.id}")
            elif fact.trace is not None and match.trace is not None:
                facts.append(compare_traces(fs.name, fact.id, fact.trace, match.trace))
        sets.append(SetComparison(fs.name, _ate(fs), _ate(other), tuple(facts)))
    before_keys = {f"{fs.name}::{f.id}" for fs in before.factsets for f in fs.facts}
    only_after = [f"{fs.name}::{f.id}" for fs in after.factsets for f in fs.facts if f"{fs.name}::{f.id}" not in before_keys]
    return Comparison(before_label, after_label, tuple(sets), tuple(only_before), tuple(only_after))


def _ate(fs: FactSetResult) -> float | None:
    return fs.aggregate.ate if fs.aggregate is not None else None


@dataclass(frozen=True)
class BaselineRule:
    """Fail when a peak moves by more than `max_layer_shift` layers (or to another token
    category), or when ATE / a fact's TE drops by more than `max_ate_drop` / `max_te_drop`."""

    max_layer_shift: int = 2
    max_ate_drop: float = 0.05
    max_te_drop: float = 0.1

    def fact_failures(self, comparison: FactComparison) -> list[str]:
        found = []
        for peak in comparison.peaks:
            if abs(peak.layer_shift) > self.max_layer_shift:
                found.append(
                    f"{peak.kind} peak moved {peak.layer_shift:+d} layers (L{peak.layer_before} -> L{peak.layer_after}), "
                    f"more than {self.max_layer_shift}"
                )
            if peak.category_before != peak.category_after:
                found.append(f"{peak.kind} peak moved from {peak.category_before} to {peak.category_after}")
        if comparison.te_before - comparison.te_after > self.max_te_drop:
            found.append(f"TE dropped {comparison.te_before:.3f} -> {comparison.te_after:.3f}, more than {self.max_te_drop}")
        return found

    def set_failures(self, comparison: SetComparison) -> list[str]:
        if comparison.ate_before is None or comparison.ate_after is None:
            return []
        if comparison.ate_before - comparison.ate_after > self.max_ate_drop:
            return [f"ATE dropped {comparison.ate_before:.3f} -> {comparison.ate_after:.3f}, more than {self.max_ate_drop}"]
        return []


def load_comparable(path: str | Path) -> RunResults:
    """A results file, or a single trace JSON (wrapped as a one-fact run)."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: truncated or invalid JSON (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(data, dict) and data.get("kind") == "fact-locator-results":
        return RunResults.from_dict(data, source=str(path))
    trace = Trace.load(path)
    fact = FactResult(id=trace.fact_id or "fact", subject=trace.subject, relation=trace.relation, target=trace.target, trace=trace)
    return RunResults(
        model=dict(vars(trace.model)), settings=trace.settings, versions=trace.versions, started_at="", finished_at="",
        factsets=[FactSetResult(name="trace", path=str(path), facts=[fact])],
    )
