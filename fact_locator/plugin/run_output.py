"""What a pytest run shows and writes for fact-locator: the header lines (the settings and
where each came from), the results files (`--fl-json`, `--fl-html`) and the terminal summary."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fact_locator.plugin.options import ResolvedOptions
from fact_locator.settings import AUTO_SAMPLES, AUTO_START_SAMPLES

if TYPE_CHECKING:
    from fact_locator.results import RunResults

__all__ = ["header_lines", "summary_lines", "write_outputs"]

_TRACE_HEADER = ("model", "device", "dtype", "samples", "seed", "window", "noise", "kinds", "corruption", "metric",
                 "target-metric", "method")
# Shown only when they are not these (the method's defaults): most runs never set them.
_QUIET_DEFAULTS = {"target-metric": "first"}


def _unremarkable(name: str, values: dict[str, object]) -> bool:
    return name in _QUIET_DEFAULTS and values[name] == _QUIET_DEFAULTS[name]


def header_lines(options: ResolvedOptions) -> list[str]:
    """The lines under pytest's header: each trace setting (with its source when not the
    default), the fact sets, cache and unknown rule, then method, severed, Ray and baseline notes."""
    values, sources = options.values, options.sources

    def show(name: str) -> str:
        value = values[name]
        notes = [] if sources[name] == "default" else [sources[name]]
        if name == "noise" and value is None:
            value = "calibrated per fact set"
        if name == "samples" and value == AUTO_SAMPLES:
            # The rounds' range and the level they stop at (docs/statistics.md, "Adaptive samples").
            notes.insert(0, f"{AUTO_START_SAMPLES}..{values['max-samples']}, {float(values['confidence']):.0%}")
        return f"{name}={value}" + (f" ({'; '.join(notes)})" if notes else "")

    cache = "off" if values["no-cache"] else (values["cache-dir"] or "default")
    unknown = values["unknown"] or "per fact set (skip)"
    lines = [
        f"fact-locator: {', '.join(show(n) for n in _TRACE_HEADER if not _unremarkable(n, values))}",
        f"fact-locator: factsets={values['factsets']}, cache={cache}, unknown={unknown}"
        + "; a fact set's settings: apply where no cli/ini value is given",
    ]
    if values["method"] == "atp":
        lines.append("fact-locator: method=atp: traces are approximate (attribution patching), not causal tracing")
    extras = []
    if values["severed"]:
        extras.append("severed paths: on")
    if values["executor"] == "ray":
        actors = f"{values['ray-workers']} actors" if values["ray-workers"] else "an actor per GPU, else one CPU actor"
        extras.append(f"executor=ray ({values['ray-address'] or 'a local Ray instance'}, {actors})")
    if values["baseline"] is not None:
        extras.append(f"baseline={values['baseline']} (max layer shift {values['baseline-max-layer-shift']}, "
                      f"max ATE drop {values['baseline-max-ate-drop']}, max TE drop {values['baseline-max-te-drop']}"
                      f"{', noise change allowed' if values['baseline-allow-noise-change'] else ''})")
    if extras:
        lines.append("fact-locator: " + ", ".join(extras))
    return lines


def write_outputs(results: RunResults, json_path: Path | None, html_path: Path | None) -> list[str]:
    """--fl-json and --fl-html; returns what was written, one line each. A write error is a
    warning, not a lost run."""
    written: list[str] = []
    if json_path is not None:
        try:
            results.save(json_path)
            written.append(f"results JSON: {json_path}")
        except OSError as exc:
            warnings.warn(pytest.PytestWarning(f"fact-locator: cannot write {json_path}: {exc}"), stacklevel=1)
    if html_path is not None:
        try:
            from fact_locator.report.html import write_html
        except ImportError as exc:
            warnings.warn(pytest.PytestWarning(f"fact-locator: no HTML report ({exc})"), stacklevel=1)
            return written
        try:
            write_html(results, html_path)
            written.append(f"HTML report: {html_path}")
        except OSError as exc:
            warnings.warn(pytest.PytestWarning(f"fact-locator: cannot write {html_path}: {exc}"), stacklevel=1)
    return written


def summary_lines(results: RunResults, written: list[str], *, color: bool, width: int, quiet: bool) -> list[str]:
    """The terminal summary (fact_locator.report.terminal when available) plus where the
    results went and how many traces came from the cache."""
    lines: list[str] = []
    try:
        from fact_locator.report.terminal import write_summary
    except ImportError:
        counts = results.counts()
        lines.append("fact-locator: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    else:
        text = write_summary(results, color=color, width=width, quiet=quiet)
        lines.extend(text.rstrip("\n").splitlines())
    stats = results.settings.get("stats")
    if stats:
        lines.append(f"fact-locator: {stats.get('traced', 0)} facts traced, {stats.get('cached', 0)} from the cache"
                     f" ({results.settings.get('cache_dir') or 'cache off'})")
    lines.extend(f"fact-locator: {w}" for w in written)
    return lines
