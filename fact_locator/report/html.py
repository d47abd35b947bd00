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
from markupsafe import Markup

from fact_locator.errors import ResultsError
from fact_locator.report import svg
from fact_locator.report.model_and_method import model_summary
from fact_locator.report.outcomes import OUTCOME_ORDER
from fact_locator.report.sections import SECTIONS, FeedsScript, ReportRun
from fact_locator.results import RunResults, write_atomic

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
class PageView:
    """What the page around the sections shows: its head, the verdicts header, the footer and
    the script's JSON data."""

    model: dict[str, str]
    counts: list[tuple[str, int]]  # audits per outcome, worst first
    n_audits: int
    finished_at: str
    palette_css: Markup
    geometry_css: Markup
    gradient_defs: Markup
    schema_version: int
    sections: list[Markup]  # each section's partial, rendered from its view, in SECTIONS order
    data: dict[str, Any]


def _render_sections(run: ReportRun) -> tuple[list[Markup], dict[str, Any]]:
    """Each section's HTML, and the script's data its views contribute."""
    env = _environment()
    parts: list[Markup] = []
    data: dict[str, Any] = {}
    for section in SECTIONS:
        view = section.build(run)
        # the partial sees only its view; its output is already escaped
        parts.append(Markup(env.get_template(section.template).render(view=view)))
        if isinstance(view, FeedsScript):
            extra = view.script_data()
            clash = sorted(set(extra) & set(data))
            if clash:
                raise RuntimeError(f"report section {section.name!r} gives script data keys another section gave: {clash}")
            data.update(extra)
    return parts, data


def _page(run: ReportRun) -> PageView:
    results = run.results
    max_layers = max((len(next(iter(t.ie.values()), ())) for t in run.traced if t.ie), default=0)
    max_tokens = max((len(t.tokens) for t in run.traced), default=0)
    counts = results.counts()
    sections, data = _render_sections(run)
    return PageView(
        model=model_summary(results.model),
        counts=[(name, counts.get(name, 0)) for name in OUTCOME_ORDER if name in counts],
        n_audits=sum(counts.values()),
        finished_at=results.finished_at,
        palette_css=svg.palette_css(),
        geometry_css=svg.geometry_css(max_layers, max_tokens),
        gradient_defs=svg.gradient_defs(),
        schema_version=results.version,
        sections=sections,
        data=data,
    )


def render_html(results: RunResults, rendered_at: str | None = None) -> str:
    """The whole report as one HTML string."""
    if rendered_at is None:
        rendered_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    template = _environment().get_template("report.html.j2")
    page = _page(ReportRun.of(results, rendered_at))
    return template.render(vars(page))


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
