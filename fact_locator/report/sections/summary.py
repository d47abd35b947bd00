"""The summary section: one row per fact, per fact set with aggregate audits and per run-level
outcome, failing first; the page's script filters these rows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fact_locator.report.outcomes import OUTCOME_ORDER, fact_outcome, fact_reason, notable, rank, set_outcome
from fact_locator.report.peaks import peak
from fact_locator.report.percentages import pct
from fact_locator.report.sections.run import ReportRun, fact_anchor, set_anchor
from fact_locator.results import AuditOutcome, FactResult, FactSetResult

__all__ = ["Message", "SummaryRow", "SummaryView", "build_summary"]


@dataclass(frozen=True)
class Message:
    """A line of the messages column, styled by the outcome it belongs to: only failures and
    errors are shown as errors."""

    outcome: str
    text: str


@dataclass(frozen=True)
class SummaryRow:
    outcome: str
    set: str
    id: str
    anchor: str  # the fact's or fact set's id on the page, "" for a run-level outcome
    subject: str
    prompt: str
    target: str
    p: str
    te: str
    peaks: list[str]  # one per kind of the run
    messages: list[Message]
    i: int = 0  # the row's place on the page, which the script's data follows

    def search_text(self) -> str:
        return " ".join([self.set, self.id, self.subject, self.prompt, self.target, *(m.text for m in self.messages)]).lower()


@dataclass(frozen=True)
class SummaryView:
    kinds: list[str]
    rows: list[SummaryRow]
    row_counts: list[tuple[str, int]]  # rows per outcome, outcomes without rows left out

    def script_data(self) -> dict[str, Any]:
        return {"rows": [{"outcome": r.outcome, "text": r.search_text()} for r in self.rows], "outcomes": list(OUTCOME_ORDER)}


def _messages(outcomes: list[AuditOutcome]) -> list[Message]:
    return [Message(o.outcome, f"{o.outcome}: {o.expectation}" + (f": {o.message}" if o.message else "")
                    + (f" (counted as {o.counted_as})" if o.counted_as else "")) for o in notable(outcomes)]


def _fact_row(fs: FactSetResult, fact: FactResult, anchor: str, kinds: list[str]) -> SummaryRow:
    outcome, reason, trace = fact_outcome(fact), fact_reason(fact), fact.trace
    messages = _messages(fact.outcomes)
    if trace is None and reason:
        messages.insert(0, Message(outcome, f"{fact.status}: {reason}"))
    return SummaryRow(
        outcome=outcome,
        set=fs.name,
        id=fact.id,
        anchor=anchor,
        subject=fact.subject,
        prompt=trace.prompt if trace is not None else fact.relation.replace("{}", fact.subject),
        target=fact.target,
        p=f"{trace.p_clean:.3f}" if trace is not None else "—",
        te=f"{trace.te:.3f}" if trace is not None else "—",
        peaks=[str(site) if (site := peak(trace, k)) is not None else "—" for k in kinds],
        messages=messages,
    )


def _set_row(fs: FactSetResult, anchor: str, kinds: list[str]) -> SummaryRow:
    return SummaryRow(
        outcome=set_outcome(fs),
        set=fs.name,
        id="(aggregate)",
        anchor=anchor,
        subject="",
        prompt=f"aggregate audits of {fs.name}",
        target="",
        p="—",
        te=pct(fs.aggregate.ate) if fs.aggregate is not None else "—",
        peaks=["—" for _ in kinds],
        messages=_messages(fs.outcomes) or [Message("passed", f"{len(fs.outcomes)} passed")],
    )


def _run_row(o: AuditOutcome, kinds: list[str]) -> SummaryRow:
    return SummaryRow(
        outcome=o.outcome, set="", id=o.nodeid, anchor="", subject="", prompt=o.expectation, target="", p="—", te="—",
        peaks=["—" for _ in kinds], messages=[Message(o.outcome, o.message)] if o.message else [],
    )


def build_summary(run: ReportRun) -> SummaryView:
    rows: list[SummaryRow] = []
    for si, fs in enumerate(run.results.factsets):
        rows += [_fact_row(fs, fact, fact_anchor(si, fi), run.kinds) for fi, fact in enumerate(fs.facts)]
        if fs.outcomes:
            rows.append(_set_row(fs, set_anchor(si), run.kinds))
    rows += [_run_row(o, run.kinds) for o in run.results.outcomes]
    # sorted() is stable: rows of one outcome keep the results' order
    rows = [replace(row, i=i) for i, row in enumerate(sorted(rows, key=lambda r: rank(r.outcome)))]
    counts = [(name, sum(1 for r in rows if r.outcome == name)) for name in OUTCOME_ORDER]
    return SummaryView(kinds=run.kinds, rows=rows, row_counts=[(name, n) for name, n in counts if n])
