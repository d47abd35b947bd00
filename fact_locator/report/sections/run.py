"""What every section of the HTML report is built from: the run's results and what several
sections share (its traces, the kinds they traced, the anchors that link a summary row to its
fact)."""

from __future__ import annotations

from dataclasses import dataclass

from fact_locator.report.model_and_method import run_method
from fact_locator.report.peaks import trace_kinds
from fact_locator.results import RunResults
from fact_locator.tracing.trace import Trace

__all__ = ["ReportRun", "fact_anchor", "set_anchor"]


@dataclass(frozen=True)
class ReportRun:
    results: RunResults
    rendered_at: str
    traces: list[Trace | None]  # every fact's trace (None where not traced), in results order
    kinds: list[str]  # the kinds any trace has, hidden, mlp, attn first
    method: dict[str, str]  # metric, corruption, method (model_and_method.run_method)

    @classmethod
    def of(cls, results: RunResults, rendered_at: str) -> ReportRun:
        traces = [f.trace for fs in results.factsets for f in fs.facts]
        return cls(results, rendered_at, traces, trace_kinds(traces), run_method(results.settings, traces))

    @property
    def traced(self) -> list[Trace]:
        return [t for t in self.traces if t is not None]


def set_anchor(set_index: int) -> str:
    return f"s{set_index}"


def fact_anchor(set_index: int, fact_index: int) -> str:
    return f"f{set_index}-{fact_index}"
