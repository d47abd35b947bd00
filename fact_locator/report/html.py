"""The HTML report: one self-contained file (inline CSS, SVG and a little JS, no other host).

Reads only `RunResults`. Rendering is deterministic: the same results give the same HTML
apart from the render time (`rendered_at`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from fact_locator.errors import ResultsError
from fact_locator.report import svg
from fact_locator.report._common import (
    APPROXIMATE_BADGE,
    OUTCOME_ORDER,
    PAPER_ATE,
    PAPER_MODEL,
    PAPER_N_FACTS,
    PAPER_N_LAYERS,
    PAPER_P_CLEAN,
    PAPER_P_CORRUPT,
    aggregate_kinds,
    aie_rows,
    fact_outcome,
    fact_reason,
    interval_text,
    is_approximate,
    model_summary,
    notable,
    peak,
    pct,
    rank,
    run_method,
    set_outcome,
    severed_of,
    severed_text,
    trace_kinds,
)
from fact_locator.report.run_settings import folded_tables, key_settings
from fact_locator.results import AuditOutcome, FactResult, FactSetResult, RunResults, write_atomic

__all__ = ["render_html", "render_results_file", "write_html"]

TEMPLATES = Path(__file__).parent / "templates"


# Bidirectional-text controls (LRE..RLO, LRI..PDI, LRM/RLM, ALM): escaping < > & " ' leaves
# them in, and a raw U+202E in a subject would reverse the text shown after it (a spoofed
# report). Every output is shown with them as visible `\\u202e` escapes, which are also valid
# escapes inside the page's JSON data.
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_BIDI_TABLE = {code: f"\\u{code:04x}" for code in _BIDI}


def _finalize(value: Any) -> Any:
    if isinstance(value, str) and any(ord(ch) in _BIDI for ch in value):
        return type(value)(str.translate(value, _BIDI_TABLE))  # a Markup stays Markup
    return value


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        finalize=_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # compact, key-sorted JSON for |tojson (Jinja still escapes < > & ' in it)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}
    return env


@dataclass(frozen=True)
class Message:
    """A line of the summary's messages column, styled by the outcome it belongs to: only
    failures and errors are shown as errors."""

    outcome: str
    text: str


def _audit_view(o: AuditOutcome) -> dict[str, Any]:
    return {
        "nodeid": o.nodeid,
        "expectation": o.expectation,
        "outcome": o.outcome,
        "message": o.message,
        "duration": f"{o.duration:.2f}s",
    }


def _messages(outcomes: list[AuditOutcome]) -> list[Message]:
    return [Message(o.outcome, f"{o.outcome}: {o.expectation}" + (f": {o.message}" if o.message else "")) for o in notable(outcomes)]


def _prompt_parts(fact: FactResult) -> tuple[str, str, str] | None:
    """(before, subject, after) when the relation has exactly one '{}'."""
    if fact.relation.count("{}") != 1:
        return None
    before, after = fact.relation.split("{}")
    return before, fact.subject, after


def _fact_view(fact: FactResult, anchor: str, kinds: list[str]) -> dict[str, Any]:
    trace = fact.trace
    outcome = fact_outcome(fact)
    view: dict[str, Any] = {
        "anchor": anchor,
        "id": fact.id,
        "subject": fact.subject,
        "relation": fact.relation,
        "target": fact.target,
        "tags": list(fact.tags),
        "status": fact.status,
        "reason": fact_reason(fact),
        "outcome": outcome,
        "open": rank(outcome) < rank("passed"),
        "audits": [_audit_view(o) for o in sorted(fact.outcomes, key=lambda o: rank(o.outcome))],
        "parts": _prompt_parts(fact),
        "trace": None,
        "heatmaps": [],
    }
    if trace is not None:
        view["trace"] = {
            "prompt": trace.prompt,
            "target_token": trace.target_token,
            "top_token": trace.top_token,
            "known": trace.known,
            "p_clean": f"{trace.p_clean:.3f}",
            "p_corrupt": f"{trace.p_corrupt:.3f}",
            "te": f"{trace.te:.3f}",
            "n_tokens": len(trace.tokens),
            "subject_range": f"{trace.subject_range[0]}..{trace.subject_range[1] - 1}",
            "noise": f"{trace.noise.std:g} ({trace.noise.calibration})",
            "peaks": [(kind, str(site)) for kind in trace_kinds([trace]) if (site := peak(trace, kind)) is not None],
            "metric": trace.metric,
            "approximate": is_approximate(trace),
        }
        view["heatmaps"] = [svg.heatmap(trace, kind, svg.palette_for(kind, kinds)) for kind in trace_kinds([trace])]
    severed = severed_of(fact)
    view["severed"] = severed_text(severed)
    view["severed_chart"] = svg.severed_chart(severed) if severed is not None and severed.curves else None
    return view


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


def _context(results: RunResults, rendered_at: str) -> dict[str, Any]:
    all_traces = [f.trace for fs in results.factsets for f in fs.facts]
    kinds = trace_kinds(all_traces)
    max_layers = max((len(next(iter(t.ie.values()), ())) for t in all_traces if t is not None and t.ie), default=0)
    max_tokens = max((len(t.tokens) for t in all_traces if t is not None), default=0)

    rows: list[dict[str, Any]] = []
    factsets: list[dict[str, Any]] = []
    for si, fs in enumerate(results.factsets):
        set_anchor = f"s{si}"
        facts = []
        for fi, fact in enumerate(fs.facts):
            anchor = f"f{si}-{fi}"
            view = _fact_view(fact, anchor, kinds)
            facts.append(view)
            messages = _messages(fact.outcomes)
            if fact.trace is None and view["reason"]:
                messages.insert(0, Message(view["outcome"], f"{fact.status}: {view['reason']}"))
            trace = fact.trace
            rows.append(
                {
                    "order": (rank(view["outcome"]), len(rows)),
                    "outcome": view["outcome"],
                    "set": fs.name,
                    "id": fact.id,
                    "anchor": anchor,
                    "subject": fact.subject,
                    "prompt": trace.prompt if trace is not None else fact.relation.replace("{}", fact.subject),
                    "target": fact.target,
                    "p": f"{trace.p_clean:.3f}" if trace is not None else "—",
                    "te": f"{trace.te:.3f}" if trace is not None else "—",
                    "peaks": [str(site) if (site := peak(trace, k)) is not None else "—" for k in kinds],
                    "messages": messages,
                }
            )
        if fs.outcomes:
            rows.append(
                {
                    "order": (rank(set_outcome(fs)), len(rows)),
                    "outcome": set_outcome(fs),
                    "set": fs.name,
                    "id": "(aggregate)",
                    "anchor": set_anchor,
                    "subject": "",
                    "prompt": f"aggregate audits of {fs.name}",
                    "target": "",
                    "p": "—",
                    "te": pct(fs.aggregate.ate) if fs.aggregate is not None else "—",
                    "peaks": ["—" for _ in kinds],
                    "messages": _messages(fs.outcomes) or [Message("passed", f"{len(fs.outcomes)} passed")],
                }
            )
        charts = []
        if fs.aggregate is not None:
            charts = [svg.line_chart(kind, fs.aggregate.aie[kind]) for kind in aggregate_kinds(fs.aggregate)]
        factsets.append(
            {
                "anchor": set_anchor,
                "name": fs.name,
                "path": fs.path,
                "description": fs.description,
                "facts": facts,
                "aggregate": _aggregate_rows(fs),
                "charts": charts,
                "audits": [_audit_view(o) for o in sorted(fs.outcomes, key=lambda o: rank(o.outcome))],
                "n_traced": sum(1 for f in fs.facts if f.trace is not None),
            }
        )
    for o in results.outcomes:
        rows.append(
            {
                "order": (rank(o.outcome), len(rows)),
                "outcome": o.outcome,
                "set": "",
                "id": o.nodeid,
                "anchor": "",
                "subject": "",
                "prompt": o.expectation,
                "target": "",
                "p": "—",
                "te": "—",
                "peaks": ["—" for _ in kinds],
                "messages": [Message(o.outcome, o.message)] if o.message else [],
            }
        )
    rows.sort(key=lambda r: r["order"])
    for i, row in enumerate(rows):
        row["i"] = i
    row_counts = [(name, sum(1 for r in rows if r["outcome"] == name)) for name in OUTCOME_ORDER]
    row_counts = [(name, n) for name, n in row_counts if n]
    counts = results.counts()
    data = {
        "rows": [
            {
                "outcome": r["outcome"],
                "text": " ".join([r["set"], r["id"], r["subject"], r["prompt"], r["target"], *(m.text for m in r["messages"])]).lower(),
            }
            for r in rows
        ],
        "outcomes": list(OUTCOME_ORDER),
        "heatmaps": sum(len(f["heatmaps"]) for fs in factsets for f in fs["facts"]),
    }
    method = run_method(results.settings, all_traces)
    traced = [t for t in all_traces if t is not None]
    return {
        "model": model_summary(results.model),
        "method": method,
        "approximate_badge": APPROXIMATE_BADGE,
        "key_settings": key_settings(results, traced, method, APPROXIMATE_BADGE if method["method"] == "atp" else ""),
        "folded": folded_tables(results, rendered_at),
        "started_at": results.started_at,
        "finished_at": results.finished_at,
        "rendered_at": rendered_at,
        "counts": [(name, counts.get(name, 0)) for name in OUTCOME_ORDER if name in counts],
        "n_audits": sum(counts.values()),
        "kinds": kinds,
        "rows": rows,
        "row_counts": row_counts,
        "factsets": factsets,
        "data": data,
        "palette_css": svg.palette_css(),
        "gradient_defs": svg.gradient_defs(),
        "geometry_css": svg.geometry_css(max_layers, max_tokens),
        "paper_model": PAPER_MODEL,
        "paper_layers": PAPER_N_LAYERS,
        "schema_version": results.version,
    }


def render_html(results: RunResults, rendered_at: str | None = None) -> str:
    """The whole report as one HTML string."""
    if rendered_at is None:
        rendered_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    template = _environment().get_template("report.html.j2")
    return template.render(**_context(results, rendered_at))


def write_html(results: RunResults, path: str | Path) -> None:
    """Render, then write atomically: a failed render leaves no file and an old one intact."""
    write_atomic(Path(path), render_html(results))


def render_results_file(results_path: str | Path, out_path: str | Path) -> None:
    """Load a results file (ResultsError, one line, for a missing / truncated / other-version
    file) and write its HTML report to `out_path`."""
    results = RunResults.load(results_path)
    try:
        html = render_html(results)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())
        raise ResultsError(f"{results_path}: cannot render a report from these results ({type(exc).__name__}: {detail})") from exc
    write_atomic(Path(out_path), html)
