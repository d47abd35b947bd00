"""The comparison of two runs as one self-contained HTML page (no other host)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from fact_locator.compare import BaselineRule, Comparison
from fact_locator.report.html import _environment
from fact_locator.results import write_atomic

__all__ = ["render_comparison", "write_comparison"]


def render_comparison(comparison: Comparison, rule: BaselineRule, rendered_at: str | None = None) -> str:
    if rendered_at is None:
        rendered_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    kinds: list[str] = []
    sets = []
    regressions = 0
    for fs in comparison.sets:
        facts = []
        for fact in fs.facts:
            # The set reports a noise change once; each fact lists what its own numbers show.
            findings = rule.fact_findings(fact, noise=False)
            failures = [f.message for f in findings if f.called]
            regressions += bool(failures)
            kinds += [p.kind for p in fact.peaks if p.kind not in kinds]
            facts.append(SimpleNamespace(
                fact_id=fact.fact_id, te_before=fact.te_before, te_after=fact.te_after, te_change=fact.te_change,
                peaks={p.kind: p for p in fact.peaks}, failures=failures,
                notes=[f.message for f in findings if not f.called],
            ))
        set_findings = rule.set_findings(fs)
        set_failures = [f.message for f in set_findings if f.called]
        regressions += len(set_failures)
        sets.append(SimpleNamespace(name=fs.name, ate_before=fs.ate_before, ate_after=fs.ate_after,
                                    failures=set_failures, notes=[f.message for f in set_findings if not f.called],
                                    facts=facts))
    return _environment().get_template("compare.html.j2").render(
        before=comparison.before, after=comparison.after, rule=rule, sets=sets, kinds=kinds,
        regressions=regressions, only_before=comparison.only_before, only_after=comparison.only_after,
        rendered_at=rendered_at,
    )


def write_comparison(comparison: Comparison, rule: BaselineRule, path: str | Path) -> None:
    write_atomic(Path(path), render_comparison(comparison, rule))
