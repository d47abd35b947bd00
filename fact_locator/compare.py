"""Compare two runs (two models, or a base model and its fine-tuned or edited version):
where the peak sites moved and how the effects changed; and the baseline rule CI uses.

The rule calls a change only where it exceeds what both runs' uncertainty explains: a TE or
ATE drop when its interval (`change_intervals.py`) lies above the allowed drop, a peak move
when both runs locate their peak with probability >= the level. A change inside the noise
is reported as "within noise" with its numbers, not as a failure. Traces or aggregates
without per-sample values (older files) fall back to comparing point values, and the
message says so. Two runs traced under different noise are not comparable: the rule fails
them unless `allow_noise_change`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fact_locator.change_intervals import DropInterval, bootstrap_drop, welch_drop
from fact_locator.errors import ResultsError
from fact_locator.results import FactResult, FactSetResult, RunResults
from fact_locator.tracing.trace import NoiseInfo, Trace
from fact_locator.tracing.uncertainty import EffectInterval

if TYPE_CHECKING:
    from fact_locator.aggregate import Aggregate
    from fact_locator.confidence import Interval

__all__ = [
    "DEFAULT_LEVEL", "BaselineRule", "Comparison", "FactComparison", "Finding", "NoiseChange", "PeakShift",
    "SetComparison", "compare_aggregates", "compare_results", "compare_traces", "load_comparable", "noise_change",
]

# The confidence level of the rule when the run sets none.
DEFAULT_LEVEL = 0.95
# Two noise values closer than this (relative) are the same noise, written and read back.
NOISE_TOLERANCE = 1e-6
POINT_FALLBACK = "no per-sample data: point values compared"


@dataclass(frozen=True)
class NoiseChange:
    """The two runs' noise, when they differ (value beyond NOISE_TOLERANCE, or source)."""

    std_before: float
    source_before: str
    std_after: float
    source_after: str

    def __str__(self) -> str:
        digits = 4
        while digits < 12 and f"{self.std_before:.{digits}g}" == f"{self.std_after:.{digits}g}":
            digits += 2
        return (f"noise differs: before {self.std_before:.{digits}g} ({self.source_before or 'source unrecorded'}), "
                f"after {self.std_after:.{digits}g} ({self.source_after or 'source unrecorded'}); "
                "effects are not comparable")


def noise_change(before: NoiseInfo, after: NoiseInfo) -> NoiseChange | None:
    """None when both traces were made under the same noise. A source is compared only when
    both traces recorded one (traces written before it was recorded have '')."""
    scale = max(abs(before.std), abs(after.std))
    value_differs = abs(before.std - after.std) > NOISE_TOLERANCE * scale
    source_differs = bool(before.source and after.source and before.source != after.source)
    if value_differs or source_differs:
        return NoiseChange(before.std, before.source, after.std, after.source)
    return None


@dataclass(frozen=True)
class PeakShift:
    kind: str
    layer_before: int
    layer_after: int
    category_before: str
    category_after: str
    value_before: float
    value_after: float
    # The probability, over resampled noise draws, that the peak is at this layer / in this
    # token category (`Trace.peak_probability`); None without per-sample data.
    layer_probability_before: float | None = None
    layer_probability_after: float | None = None
    category_probability_before: float | None = None
    category_probability_after: float | None = None

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
    # TE's t-intervals over each run's noise draws at `level`; None without per-sample data.
    te_interval_before: EffectInterval | None = None
    te_interval_after: EffectInterval | None = None
    noise: NoiseChange | None = None
    level: float = DEFAULT_LEVEL

    @property
    def te_change(self) -> float:
        return self.te_after - self.te_before


@dataclass(frozen=True)
class SetComparison:
    name: str
    ate_before: float | None
    ate_after: float | None
    facts: tuple[FactComparison, ...]
    # Each run's per-fact TEs (its aggregate's "ate" values); empty where not kept.
    ate_values_before: tuple[float, ...] = ()
    ate_values_after: tuple[float, ...] = ()
    # The distinct noise changes among the set's facts (empty: the same noise).
    noise: tuple[NoiseChange, ...] = ()
    level: float = DEFAULT_LEVEL


@dataclass(frozen=True)
class Comparison:
    before: str
    after: str
    sets: tuple[SetComparison, ...]
    only_before: tuple[str, ...] = field(default=())
    only_after: tuple[str, ...] = field(default=())
    level: float = DEFAULT_LEVEL


def compare_traces(factset: str, fact_id: str, before: Trace, after: Trace, level: float = DEFAULT_LEVEL) -> FactComparison:
    """Peaks are compared by layer and by token category (two tokenizers split differently)."""
    peaks = []
    for kind in before.kinds:
        if kind not in after.ie:
            continue
        lb, tb, vb = before.peak(kind)
        la, ta, va = after.peak(kind)
        cb, ca = before.categories[tb].value, after.categories[ta].value
        pb, pa = _peak_probabilities(before, kind, lb, cb), _peak_probabilities(after, kind, la, ca)
        peaks.append(PeakShift(kind, lb, la, cb, ca, vb, va, pb[0], pa[0], pb[1], pa[1]))
    return FactComparison(factset, fact_id, before.te, after.te, tuple(peaks), before.te_interval(level),
                          after.te_interval(level), noise_change(before.noise, after.noise), level)


def _peak_probabilities(trace: Trace, kind: str, layer: int, category: str) -> tuple[float | None, float | None]:
    """(P(peak at `layer`), P(peak in `category`)) over resampled draws; (None, None) without them."""
    sites = trace.peak_probability(kind, "site")
    if sites is None:
        return None, None
    categories = trace.peak_probability(kind, "category")
    assert isinstance(categories, dict)
    at_layer = sum(p for site, p in sites.items() if isinstance(site, tuple) and site[0] == layer)
    return at_layer, categories.get(category, 0.0)


def compare_aggregates(name: str, before: Aggregate | None, after: Aggregate | None,
                       facts: tuple[FactComparison, ...] = (), noise_pairs: Iterable[tuple[Trace, Trace]] = (),
                       level: float = DEFAULT_LEVEL) -> SetComparison:
    """One fact set's comparison: its aggregates, its facts' comparisons, and the noise of
    each pair of traces of one fact (`noise_pairs`, before and after)."""
    changes: list[NoiseChange] = []
    for trace_before, trace_after in noise_pairs:
        change = noise_change(trace_before.noise, trace_after.noise)
        if change is not None and change not in changes:
            changes.append(change)
    return SetComparison(
        name, before.ate if before is not None else None, after.ate if after is not None else None, facts,
        before.samples.get("ate", ()) if before is not None else (), after.samples.get("ate", ()) if after is not None else (),
        tuple(changes), level,
    )


def compare_results(before: RunResults, after: RunResults, before_label: str = "before", after_label: str = "after",
                    level: float = DEFAULT_LEVEL) -> Comparison:
    after_sets = {fs.name: fs for fs in after.factsets}
    sets, only_before = [], []
    for fs in before.factsets:
        other = after_sets.get(fs.name)
        if other is None:
            only_before += [f"{fs.name}::{f.id}" for f in fs.facts]
            continue
        other_facts = {f.id: f for f in other.facts}
        facts, pairs = [], []
        for fact in fs.facts:
            match = other_facts.get(fact.id)
            if match is None:
                only_before.append(f"{fs.name}::{fact.id}")
            elif fact.trace is not None and match.trace is not None:
                facts.append(compare_traces(fs.name, fact.id, fact.trace, match.trace, level))
                pairs.append((fact.trace, match.trace))
        sets.append(compare_aggregates(fs.name, fs.aggregate, other.aggregate, tuple(facts), pairs, level))
    before_keys = {f"{fs.name}::{f.id}" for fs in before.factsets for f in fs.facts}
    only_after = [f"{fs.name}::{f.id}" for fs in after.factsets for f in fs.facts if f"{fs.name}::{f.id}" not in before_keys]
    return Comparison(before_label, after_label, tuple(sets), tuple(only_before), tuple(only_after), level)


@dataclass(frozen=True)
class Finding:
    """One thing the rule found: `called` is a regression (a failure); otherwise a change
    the rule reports but does not call (within noise, or an accepted noise change)."""

    message: str
    called: bool
    about: str = ""  # what changed: "noise", "peak", "TE" or "ATE"


@dataclass(frozen=True)
class BaselineRule:
    """Fail when a peak moves by more than `max_layer_shift` layers (or to another token
    category), or when ATE / a fact's TE drops by more than `max_ate_drop` / `max_te_drop`,
    each beyond the two runs' uncertainty at `level` (see the module docstring); and when
    the runs' noise differs, unless `allow_noise_change`."""

    max_layer_shift: int = 2
    max_ate_drop: float = 0.05
    max_te_drop: float = 0.1
    level: float = DEFAULT_LEVEL
    allow_noise_change: bool = False

    # -- facts ---------------------------------------------------------------------------------
    def fact_findings(self, comparison: FactComparison, noise: bool = True) -> list[Finding]:
        """Every finding of one fact; `noise=False` leaves the noise change out (a caller
        that reports it once for the whole set)."""
        found = [self._noise_finding(comparison.noise)] if noise and comparison.noise is not None else []
        for peak in comparison.peaks:
            found += self._peak_findings(peak)
        drop = comparison.te_before - comparison.te_after
        before, after = comparison.te_interval_before, comparison.te_interval_after
        if before is not None and after is not None:
            found += self._drop_findings("TE", comparison.te_before, comparison.te_after, _text(before), _text(after),
                                         welch_drop(before, after, self.level), self.max_te_drop)
        elif drop > self.max_te_drop:
            found.append(Finding(f"TE dropped {comparison.te_before:.3f} -> {comparison.te_after:.3f}, more than "
                                 f"{self.max_te_drop} ({POINT_FALLBACK})", True, "TE"))
        return found

    def fact_failures(self, comparison: FactComparison, noise: bool = True) -> list[str]:
        return [f.message for f in self.fact_findings(comparison, noise) if f.called]

    def _peak_findings(self, peak: PeakShift) -> list[Finding]:
        found = []
        certain = f"located with probability {{}} before, {{}} after, at level {self.level:g}"
        if abs(peak.layer_shift) > self.max_layer_shift:
            moved = (f"{peak.kind} peak moved {peak.layer_shift:+d} layers (L{peak.layer_before} -> L{peak.layer_after}), "
                     f"more than {self.max_layer_shift}")
            found.append(self._located(moved, peak.layer_probability_before, peak.layer_probability_after, certain))
        if peak.category_before != peak.category_after:
            moved = f"{peak.kind} peak moved from {peak.category_before} to {peak.category_after}"
            found.append(self._located(moved, peak.category_probability_before, peak.category_probability_after, certain))
        return found

    def _located(self, moved: str, before: float | None, after: float | None, certain: str) -> Finding:
        if before is None or after is None:
            return Finding(f"{moved} ({POINT_FALLBACK})", True, "peak")
        numbers = certain.format(f"{before:.2f}", f"{after:.2f}")
        if before >= self.level and after >= self.level:
            return Finding(f"{moved} ({numbers})", True, "peak")
        return Finding(f"{moved}: within noise ({numbers}; a move counts when both are >= {self.level:g})", False, "peak")

    def _drop_findings(self, name: str, before: float, after: float, before_text: str, after_text: str,
                       drop: DropInterval, most: float) -> list[Finding]:
        numbers = f"before {before_text}, after {after_text}; drop {drop}"
        if drop.low > most:
            return [Finding(f"{name} dropped {before:.3f} -> {after:.3f} ({numbers} > {most})", True, name)]
        if drop.estimate > most:
            return [Finding(f"{name} dropped {before:.3f} -> {after:.3f}: within noise ({numbers}, "
                            f"not all > {most} at level {self.level:g})", False, name)]
        return []

    # -- fact sets -----------------------------------------------------------------------------
    def set_findings(self, comparison: SetComparison) -> list[Finding]:
        found = [self._noise_finding(change) for change in comparison.noise]
        before, after = comparison.ate_before, comparison.ate_after
        if before is None or after is None:
            return found
        values_before, values_after = comparison.ate_values_before, comparison.ate_values_after
        if values_before and values_after:
            from fact_locator.confidence import bootstrap_mean

            found += self._drop_findings(
                "ATE", before, after, _text(bootstrap_mean(values_before, self.level)),
                _text(bootstrap_mean(values_after, self.level)), bootstrap_drop(values_before, values_after, self.level),
                self.max_ate_drop)
        elif before - after > self.max_ate_drop:
            found.append(Finding(f"ATE dropped {before:.3f} -> {after:.3f}, more than {self.max_ate_drop} "
                                 f"({POINT_FALLBACK})", True, "ATE"))
        return found

    def set_failures(self, comparison: SetComparison) -> list[str]:
        return [f.message for f in self.set_findings(comparison) if f.called]

    def _noise_finding(self, change: NoiseChange) -> Finding:
        if self.allow_noise_change:
            return Finding(f"{change} (accepted: allow noise change)", False, "noise")
        return Finding(str(change), True, "noise")


def _text(interval: EffectInterval | Interval) -> str:
    """An interval of the estimate, as `0.310 [0.260, 0.360]`."""
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


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
