"""The sections of the HTML report's <main>, in page order: ONE list.

Each section is a view-model (a dataclass that `build` makes from the run's `ReportRun`) and a
template partial under `report/templates/sections/` that sees only that view, as `view`. Adding
a section is a build function, a partial and one line here. A view that the page's script needs
data from has a `script_data()` method; its keys join the page's JSON data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fact_locator.report.sections.factsets import build_factsets
from fact_locator.report.sections.run import ReportRun
from fact_locator.report.sections.settings import build_settings
from fact_locator.report.sections.summary import build_summary

__all__ = ["SECTIONS", "FeedsScript", "ReportRun", "Section"]


@dataclass(frozen=True)
class Section:
    name: str
    build: Callable[[ReportRun], object]  # the section's view-model
    template: str  # its partial, relative to report/templates/


@runtime_checkable
class FeedsScript(Protocol):
    """A view whose section the page's script reads (keys of the JSON data it contributes)."""

    def script_data(self) -> dict[str, Any]: ...


# The summary comes first: the page opens on the verdicts.
SECTIONS: list[Section] = [
    Section("summary", build_summary, "sections/summary.html.j2"),
    Section("settings", build_settings, "sections/settings.html.j2"),
    Section("factsets", build_factsets, "sections/factsets.html.j2"),
]
