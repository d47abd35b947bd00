"""The fact set sections: per fact set its aggregate beside the paper's Figure 2, its aggregate
audits, and per fact its trace's numbers, heatmaps, severed paths and audits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from fact_locator.report import svg
from fact_locator.report.model_and_method import APPROXIMATE_BADGE, is_approximate
from fact_locator.report.outcomes import fact_outcome, fact_reason, rank
from fact_locator.report.paper import PAPER_ATE, PAPER_MODEL, PAPER_N_FACTS, PAPER_N_LAYERS, PAPER_P_CLEAN, PAPER_P_CORRUPT, aie_rows
from fact_locator.report.peaks import aggregate_kinds, peak, trace_kinds
from fact_locator.report.percentages import interval_text, pct
from fact_locator.report.sections.run import ReportRun, fact_anchor, set_anchor
from fact_locator.report.severed_paths import severed_of, severed_text
from fact_locator.results import AuditOutcome, FactResult, FactSetResult
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.uncertainty import DEFAULT_BOOTSTRAP, category_probabilities, peak_counts, site_probabilities

__all__ = ["AuditRow", "FactSetView", "FactSetsView", "FactView", "TraceNumbers", "build_factsets"]

# The confidence level of a trace's intervals over its noise draws (the same as the terminal's).
LEVEL = 0.95


@dataclass(frozen=True)
class AuditRow:
    nodeid: str
    expectation: str
    outcome: str
    message: str
    duration: str


@dataclass(frozen=True)
class TraceNumbers:
    """A trace's numbers as shown (three decimals), its peaks and whether it is approximate."""

    prompt: str
    target_token: str
    top_token: str
    known: bool
    p_clean: str
    p_corrupt: str
    te: str
    n_tokens: int
    subject_range: str
    noise: str
    peaks: list[tuple[str, str]]  # (kind, "L4 ' Paris' 0.300")
    metric: str
    approximate: bool
    # Over the trace's noise draws (tracing/uncertainty.py); empty for a trace that kept none.
    te_interval: str = ""  # "[0.170, 0.250] at 95% over 64 noise samples"
    peak_locations: list[tuple[str, str]] = field(default_factory=list)  # (kind, "IE [..]; this site 83%, ...")


@dataclass(frozen=True)
class FactView:
    anchor: str
    id: str
    subject: str
    relation: str
    target: str
    tags: list[str]
    status: str
    reason: str
    outcome: str
    open: bool  # shown unfolded: worse than passed
    audits: list[AuditRow]
    parts: tuple[str, str, str] | None  # (before, subject, after) of the prompt
    trace: TraceNumbers | None
    heatmaps: list[Markup]
    severed: str
    severed_chart: Markup | None


@dataclass(frozen=True)
class FactSetView:
    anchor: str
    name: str
    path: str
    description: str
    facts: list[FactView]
    aggregate: list[tuple[str, str, str]]  # (label, this run, the paper); empty without an aggregate
    charts: list[Markup]
    audits: list[AuditRow]
    n_traced: int


@dataclass(frozen=True)
class FactSetsView:
    factsets: list[FactSetView]
    paper_model: str = PAPER_MODEL
    paper_layers: int = PAPER_N_LAYERS
    approximate_badge: str = APPROXIMATE_BADGE

    def script_data(self) -> dict[str, Any]:
        # the script checks that every heatmap reached the page
        return {"heatmaps": sum(len(f.heatmaps) for fs in self.factsets for f in fs.facts)}


def _audit_rows(outcomes: list[AuditOutcome]) -> list[AuditRow]:
    ordered = sorted(outcomes, key=lambda o: rank(o.outcome))
    # An undecided verdict says how --fl-undecided counted it.
    return [AuditRow(o.nodeid, o.expectation, o.outcome, o.message + (f" (counted as {o.counted_as})" if o.counted_as else ""),
                     f"{o.duration:.2f}s") for o in ordered]


def _prompt_parts(fact: FactResult) -> tuple[str, str, str] | None:
    """(before, subject, after) when the relation has exactly one '{}'."""
    if fact.relation.count("{}") != 1:
        return None
    before, after = fact.relation.split("{}")
    return before, fact.subject, after


def _te_interval_text(trace: Trace) -> str:
    interval = trace.te_interval(LEVEL)
    if interval is None:
        return ""
    return f"[{interval.low:.3f}, {interval.high:.3f}] at {LEVEL:.0%} over {interval.n} noise samples"


def _peak_location_text(trace: Trace, kind: str) -> str:
    """The peak IE's interval and how often resampling the noise draws keeps the peak at its
    site and in its token category; '' for a trace without its draws."""
    intervals, draws = trace.ie_interval(kind, LEVEL), trace.ie_samples(kind)
    if intervals is None or draws is None:
        return ""
    # One resampling for both views (Trace.peak_probability's, with its defaults): it is most
    # of a report's time.
    counts = peak_counts(draws, DEFAULT_BOOTSTRAP, 0)
    by_site = site_probabilities(counts)
    by_category = category_probabilities(counts, [c.value for c in trace.categories])
    layer, token, _ = trace.peak(kind)
    site, category = intervals[layer][token], trace.categories[token].value
    return (f"IE [{site.low:.3f}, {site.high:.3f}] at {LEVEL:.0%}; peak at this site in "
            f"{by_site.get((layer, token), 0.0):.0%} of resamples of the noise samples, "
            f"in a {category} token in {by_category.get(category, 0.0):.0%}")


def _trace_numbers(trace: Trace, known: bool) -> TraceNumbers:
    kinds = trace_kinds([trace])
    return TraceNumbers(
        prompt=trace.prompt,
        target_token=trace.target_token,
        top_token=trace.top_token,
        known=known,
        p_clean=f"{trace.p_clean:.3f}",
        p_corrupt=f"{trace.p_corrupt:.3f}",
        te=f"{trace.te:.3f}",
        n_tokens=len(trace.tokens),
        subject_range=f"{trace.subject_range[0]}..{trace.subject_range[1] - 1}",
        noise=f"{trace.noise.std:g} ({trace.noise.calibration})",
        peaks=[(kind, str(site)) for kind in kinds if (site := peak(trace, kind)) is not None],
        metric=trace.metric,
        approximate=is_approximate(trace),
        te_interval=_te_interval_text(trace),
        peak_locations=[(kind, text) for kind in kinds if (text := _peak_location_text(trace, kind))],
    )


def _audited_known(fact: FactResult) -> bool:
    """Whether the audit counted the traced fact known, under the known rule in force (ROME's
    greedy_target by default): its reason is '' then, and "traced although unknown: ..." when
    it was traced under `unknown: trace`. `Trace.known` is only the first-token rule."""
    return fact.status == "traced" and not fact.status_reason


def _fact_view(fact: FactResult, anchor: str, kinds: list[str]) -> FactView:
    trace, outcome, severed = fact.trace, fact_outcome(fact), severed_of(fact)
    return FactView(
        anchor=anchor,
        id=fact.id,
        subject=fact.subject,
        relation=fact.relation,
        target=fact.target,
        tags=list(fact.tags),
        status=fact.status,
        reason=fact_reason(fact),
        outcome=outcome,
        open=rank(outcome) < rank("passed"),
        audits=_audit_rows(fact.outcomes),
        parts=_prompt_parts(fact),
        trace=_trace_numbers(trace, _audited_known(fact)) if trace is not None else None,
        heatmaps=[svg.heatmap(trace, kind, svg.palette_for(kind, kinds), LEVEL) for kind in trace_kinds([trace])] if trace is not None else [],
        severed=severed_text(severed),
        severed_chart=svg.severed_chart(severed) if severed is not None and severed.curves else None,
    )


def _aggregate_rows(fs: FactSetResult) -> list[tuple[str, str, str]]:
    agg = fs.aggregate
    if agg is None:
        return []
    rows = [
        ("facts traced and averaged", str(agg.n_facts), str(PAPER_N_FACTS)),
        ("ATE (P(o) − P*(o))", pct(agg.ate) + interval_text(agg, "ate"), pct(PAPER_ATE)),
        ("mean P(o), clean", pct(agg.mean_p_clean), pct(PAPER_P_CLEAN)),
        ("mean P*(o), corrupted", pct(agg.mean_p_corrupt), pct(PAPER_P_CORRUPT, 2)),
    ]
    labels = {"last_subject": "last subject token", "last": "last token"}
    rows += [(f"max AIE {kind} at {labels[category]}", ours, paper) for kind, category, ours, paper in aie_rows(agg, "layer ")]
    return rows


def _factset_view(fs: FactSetResult, si: int, kinds: list[str]) -> FactSetView:
    agg = fs.aggregate
    return FactSetView(
        anchor=set_anchor(si),
        name=fs.name,
        path=fs.path,
        description=fs.description,
        facts=[_fact_view(fact, fact_anchor(si, fi), kinds) for fi, fact in enumerate(fs.facts)],
        aggregate=_aggregate_rows(fs),
        charts=[svg.line_chart(kind, agg.aie[kind]) for kind in aggregate_kinds(agg)] if agg is not None else [],
        audits=_audit_rows(fs.outcomes),
        n_traced=sum(1 for f in fs.facts if f.trace is not None),
    )


def build_factsets(run: ReportRun) -> FactSetsView:
    return FactSetsView([_factset_view(fs, si, run.kinds) for si, fs in enumerate(run.results.factsets)])
