"""The results file's schema: what an audit run measured and decided, and how it is saved and
loaded. Reports read only this."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.errors import ResultsError
from fact_locator.results.files import write_atomic
from fact_locator.tracing.trace import SeveredPaths, Trace

__all__ = ["OUTCOMES", "RESULTS_SCHEMA_VERSION", "AuditOutcome", "FactResult", "FactSetResult", "RunResults"]

RESULTS_SCHEMA_VERSION = 1
# "undecided": an expectation whose interval straddled its threshold at the run's confidence
# level (docs/statistics.md); `AuditOutcome.counted_as` says how pytest counted it.
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error", "undecided")


@dataclass
class AuditOutcome:
    """One pytest item's verdict. `expectation` is the check as written (e.g. 'mlp-peak').
    An undecided one has `counted_as` failed, xfailed or skipped (--fl-undecided); empty
    otherwise, and in files written before verdicts could be undecided."""

    nodeid: str
    expectation: str
    outcome: str
    message: str = ""
    duration: float = 0.0
    counted_as: str = ""


@dataclass
class FactResult:
    id: str
    subject: str
    relation: str
    target: str
    tags: list[str] = field(default_factory=list)
    trace: Trace | None = None
    status: str = "traced"  # traced | unknown (the model does not know it) | error
    status_reason: str = ""
    outcomes: list[AuditOutcome] = field(default_factory=list)
    # --fl-severed: the severed-path curves and shares at the last subject token.
    severed: SeveredPaths | None = None
    # Who handled the fact: the xdist worker ("gw1"; "ray actor-1" under Ray; "" in a single process) and its device
    # ("cuda:0 (GPU 2)": the worker's GPU as CUDA_VISIBLE_DEVICES names it). "" in older files.
    worker: str = ""
    device: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trace"] = self.trace.to_dict() if self.trace is not None else None
        data["severed"] = self.severed.to_dict() if self.severed is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FactResult:
        trace = Trace.from_dict(data["trace"]) if data.get("trace") is not None else None
        outcomes = [AuditOutcome(**o) for o in data.get("outcomes", [])]
        severed = SeveredPaths.from_dict(data["severed"]) if data.get("severed") is not None else None
        return cls(**{**data, "trace": trace, "outcomes": outcomes, "severed": severed})


@dataclass
class FactSetResult:
    name: str
    path: str
    description: str = ""
    facts: list[FactResult] = field(default_factory=list)
    aggregate: Aggregate | None = None
    outcomes: list[AuditOutcome] = field(default_factory=list)  # aggregate audits

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "facts": [f.to_dict() for f in self.facts],
            "aggregate": self.aggregate.to_dict() if self.aggregate is not None else None,
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FactSetResult:
        agg = data.get("aggregate")
        return cls(
            name=data["name"],
            path=data["path"],
            description=data.get("description", ""),
            facts=[FactResult.from_dict(f) for f in data["facts"]],
            aggregate=Aggregate.from_dict(agg) if agg is not None else None,
            outcomes=[AuditOutcome(**o) for o in data.get("outcomes", [])],
        )


@dataclass
class RunResults:
    """Everything one run wrote: model, settings, versions, times, fact sets."""

    model: dict[str, Any]
    settings: dict[str, Any]
    versions: dict[str, str]
    started_at: str
    finished_at: str
    factsets: list[FactSetResult] = field(default_factory=list)
    outcomes: list[AuditOutcome] = field(default_factory=list)  # items outside any fact set
    version: int = RESULTS_SCHEMA_VERSION

    def counts(self) -> dict[str, int]:
        # "undecided" is counted only where it occurs, so a run without it counts as before.
        counts = {name: 0 for name in OUTCOMES if name != "undecided"}
        for outcome in self.all_outcomes():
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    def all_outcomes(self) -> list[AuditOutcome]:
        found = list(self.outcomes)
        for fs in self.factsets:
            found += fs.outcomes
            for fact in fs.facts:
                found += fact.outcomes
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": "fact-locator-results",
            "model": self.model,
            "settings": self.settings,
            "versions": self.versions,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "factsets": [fs.to_dict() for fs in self.factsets],
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def from_dict(cls, data: Any, source: str = "results") -> RunResults:
        if not isinstance(data, dict) or data.get("kind") != "fact-locator-results":
            raise ResultsError(f"{source}: not a fact-locator results file")
        if data.get("version") != RESULTS_SCHEMA_VERSION:
            raise ResultsError(
                f"{source}: results schema version {data.get('version')!r}, this fact-locator reads version {RESULTS_SCHEMA_VERSION}"
            )
        try:
            return cls(
                model=data["model"],
                settings=data["settings"],
                versions=data["versions"],
                started_at=data["started_at"],
                finished_at=data["finished_at"],
                factsets=[FactSetResult.from_dict(fs) for fs in data["factsets"]],
                outcomes=[AuditOutcome(**o) for o in data.get("outcomes", [])],
            )
        except ResultsError as exc:
            raise ResultsError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(f"{source}: malformed results ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def load(cls, path: str | Path) -> RunResults:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ResultsError(f"{path}: results file not found") from exc
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read results ({exc.strerror})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}: truncated or invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        return cls.from_dict(data, source=str(path))

