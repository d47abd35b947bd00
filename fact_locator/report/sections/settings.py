"""The model and settings section: a short table to judge the verdicts by, the rest folded."""

from __future__ import annotations

from dataclasses import dataclass

from fact_locator.report.model_and_method import APPROXIMATE_BADGE
from fact_locator.report.run_settings import SettingRow, SettingsTable, folded_tables, key_settings
from fact_locator.report.sections.run import ReportRun

__all__ = ["SettingsView", "build_settings"]


@dataclass(frozen=True)
class SettingsView:
    key_settings: list[SettingRow]
    folded: list[SettingsTable]


def build_settings(run: ReportRun) -> SettingsView:
    badge = APPROXIMATE_BADGE if run.method["method"] == "atp" else ""
    return SettingsView(
        key_settings=key_settings(run.results, run.traced, run.method, badge),
        folded=folded_tables(run.results, run.rendered_at),
    )
