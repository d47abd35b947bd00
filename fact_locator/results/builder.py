"""Building a run's `RunResults` from what the plugin records while the items run.

Items finish in any order and each adds a piece: a fact's trace or its status (unknown,
error), severed paths, a fact set's aggregate and settings, or one item's outcome. The
builder keeps the pieces per fact set (by its path relative to the rootdir) and, at the
end, lays them out as the results file has them: facts in the order of the fact set,
outcomes under their fact, their fact set, or the run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fact_locator.results.schema import AuditOutcome, FactResult, FactSetResult, RunResults

if TYPE_CHECKING:
    from fact_locator.aggregate import Aggregate
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.locator import CleanCheck
    from fact_locator.tracing.trace import SeveredPaths, Trace

__all__ = ["FactSetRecord", "RecordedOutcome", "ResultsBuilder"]


@dataclass
class RecordedOutcome:
    """One item's verdict while its setup, call and teardown reports come in. `factset_path`
    is empty for an item outside any fact set; `fact_id` is None for a fact set's own items."""

    nodeid: str
    factset_path: str
    fact_id: str | None
    expectation: str
    outcome: str = "passed"
    message: str = ""
    duration: float = 0.0
    counted_as: str = ""

    def audit_outcome(self) -> AuditOutcome:
        return AuditOutcome(self.nodeid, self.expectation, self.outcome, self.message, self.duration, self.counted_as)


@dataclass
class FactSetRecord:
    """What is known so far of one fact set; `order` is its facts' ids as written."""

    name: str
    path: str
    description: str = ""
    order: list[str] = field(default_factory=list)
    facts: dict[str, FactResult] = field(default_factory=dict)
    aggregate: Aggregate | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class ResultsBuilder:
    """The pieces of one process's results; safe to call from several threads."""

    def __init__(self) -> None:
        self._sets: dict[str, FactSetRecord] = {}  # key: the fact set's path relative to the rootdir
        self._outcomes: dict[str, RecordedOutcome] = {}  # key: node id
        self._lock = threading.RLock()
        # (fact-set path, fact id) -> (worker, device) where another process traced the fact (a Ray actor).
        self.fact_stamps: dict[tuple[str, str], tuple[str, str]] = {}

    def factset(self, path: str, factset: FactSet) -> FactSetRecord:
        """The record of `factset`, written at `path` (relative to the rootdir)."""
        with self._lock:
            rec = self._sets.get(path)
            if rec is None:
                rec = self._sets[path] = FactSetRecord(name=factset.name, path=path, description=factset.description,
                                                       order=[s.id for s in factset.facts])
            return rec

    def record_fact(self, path: str, factset: FactSet, spec: FactSpec, *, trace: Trace | None = None,
                    clean: CleanCheck | None = None, status: str | None = None, reason: str = "") -> FactResult:
        """Add what is known of one fact: its trace, an explicit status (with its reason), or the
        clean check (traced when a trace is there, else unknown)."""
        rec = self.factset(path, factset)
        fact = spec.fact
        with self._lock:
            result = rec.facts.get(spec.id)
            if result is None:
                result = rec.facts[spec.id] = FactResult(id=spec.id, subject=fact.subject, relation=fact.relation,
                                                         target=fact.target, tags=list(fact.tags))
            if trace is not None:
                result.trace = trace
            if status is not None:
                result.status = status
                result.status_reason = reason
            elif clean is not None:
                result.status = "traced" if trace is not None or result.trace is not None else "unknown"
                result.status_reason = clean.reason
            return result

    def record_severed(self, path: str, factset: FactSet, spec: FactSpec, severed: SeveredPaths) -> None:
        with self._lock:
            self.record_fact(path, factset, spec).severed = severed

    def record_aggregate(self, path: str, factset: FactSet, aggregate: Aggregate) -> None:
        self.factset(path, factset).aggregate = aggregate

    def outcome(self, nodeid: str, factset_path: str, fact_id: str | None, expectation: str) -> RecordedOutcome:
        """The outcome of item `nodeid`, created passed on its first report."""
        with self._lock:
            rec = self._outcomes.get(nodeid)
            if rec is None:
                rec = self._outcomes[nodeid] = RecordedOutcome(nodeid, factset_path, fact_id, expectation)
            return rec

    def factset_settings(self) -> dict[str, dict[str, Any]]:
        """Each recorded fact set's settings, by path (those with none left out)."""
        with self._lock:
            return {rec.path: rec.settings for rec in self._sets.values() if rec.settings}

    def build(self, *, model: dict[str, Any], settings: dict[str, Any], versions: dict[str, str], started_at: str,
              finished_at: str, worker: str = "", device: str = "") -> RunResults:
        """The results so far. An outcome of a fact no trace was recorded for (its item failed
        before tracing) gets a placeholder fact with status error, "not traced". Each fact
        recorded here is stamped with this process's `worker` id and `device`, or with its
        entry in `fact_stamps`."""
        by_set: dict[str, list[AuditOutcome]] = {}
        by_fact: dict[tuple[str, str], list[AuditOutcome]] = {}
        loose: list[AuditOutcome] = []
        factsets: list[FactSetResult] = []
        with self._lock:
            for rec in self._outcomes.values():
                outcome = rec.audit_outcome()
                if rec.fact_id is not None:
                    by_fact.setdefault((rec.factset_path, rec.fact_id), []).append(outcome)
                elif rec.factset_path:
                    by_set.setdefault(rec.factset_path, []).append(outcome)
                else:
                    loose.append(outcome)
            for record in self._sets.values():
                for fact in record.facts.values():
                    fact.worker, fact.device = self.fact_stamps.get((record.path, fact.id), (worker, device))
            for (path, fact_id), outcomes in by_fact.items():
                record = self._sets.get(path)
                if record is None:
                    record = self._sets[path] = FactSetRecord(name=Path(path).stem, path=path)
                if fact_id not in record.facts:
                    record.facts[fact_id] = FactResult(id=fact_id, subject="", relation="", target="", status="error",
                                                       status_reason="not traced")
                record.facts[fact_id].outcomes = outcomes
            for path, record in self._sets.items():
                order = {fid: i for i, fid in enumerate(record.order)}
                facts = sorted(record.facts.values(), key=lambda f: (order.get(f.id, len(order)), f.id))
                factsets.append(FactSetResult(name=record.name, path=record.path, description=record.description,
                                              facts=facts, aggregate=record.aggregate, outcomes=by_set.pop(path, [])))
            for path, outcomes in by_set.items():
                factsets.append(FactSetResult(name=Path(path).stem, path=path, outcomes=outcomes))
        return RunResults(model=model, settings=settings, versions=versions, started_at=started_at,
                          finished_at=finished_at, factsets=factsets, outcomes=loose)
