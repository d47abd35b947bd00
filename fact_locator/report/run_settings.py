"""The run's model and settings as readable rows for the HTML report.

`key_settings` gives the short table a reader needs to judge the verdicts (model,
fingerprint, method, samples, noise and how it was calibrated, window, kinds, seed), with the
values each fact set was traced with. `folded_tables` gives everything else as plain rows
(nested mappings flattened to `a / b` names, lists joined): no raw JSON anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from fact_locator.results import RunResults
from fact_locator.tracing.trace import Trace

__all__ = ["SettingRow", "SettingsTable", "folded_tables", "key_settings", "readable"]

# Run-settings keys shown in tables of their own (or in the short table), not as settings rows.
_OWN_TABLES = ("sources", "factset_settings", "stats")


@dataclass(frozen=True)
class SettingRow:
    """One setting: `lines` are its value (one line per fact set where they differ);
    `source` says where it came from (cli, ini, factset, default) when known."""

    name: str
    lines: tuple[str, ...]
    source: str = ""
    mono: bool = True
    badge: str = ""  # e.g. "approximate (AtP)" beside the method


@dataclass(frozen=True)
class SettingsTable:
    title: str
    rows: list[SettingRow] = field(default_factory=list)
    with_source: bool = False


def readable(value: Any) -> str:
    """A setting's value as text: none for None, lists joined with commas, numbers short."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={readable(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value)
    return str(value)


def flat_rows(mapping: Mapping[str, Any], sources: Mapping[str, Any] | None = None, prefix: str = "") -> list[SettingRow]:
    """One row per leaf; a nested mapping's keys become `outer / inner`."""
    rows: list[SettingRow] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += flat_rows(value, None, prefix=f"{name} / ")
        else:
            source = str(sources.get(key, "")) if sources is not None else ""
            rows.append(SettingRow(name, (readable(value),), source))
    return rows


def _kinds_text(value: Any) -> str:
    if isinstance(value, str):
        return ", ".join(part.strip() for part in value.split(",") if part.strip())
    return readable(value)


def _per_factset(results: RunResults, traces: list[Trace], key: str) -> tuple[str, ...]:
    """The value of `key` each fact set was traced with; one line when they agree. Results
    files without per-fact-set settings fall back to the run's, then the first trace's."""
    per_set: dict[str, Mapping[str, Any]] = dict(results.settings.get("factset_settings") or {})
    found: list[tuple[str, Any]] = [(path, values[key]) for path, values in per_set.items() if key in values]
    if not found:
        if key in results.settings:
            found = [("", results.settings[key])]
        elif traces and key in traces[0].settings:
            found = [("", traces[0].settings[key])]
        else:
            return ("—",)
    texts = [(path, _kinds_text(v) if key == "kinds" else readable(v)) for path, v in found]
    if len({text for _, text in texts}) == 1:
        return (texts[0][1],)
    return tuple(f"{PurePosixPath(path).stem}: {text}" for path, text in texts)


def _noise_lines(results: RunResults, traces: list[Trace]) -> tuple[str, ...]:
    """The noise std and how it was obtained: per fact set where the run recorded it, else the
    distinct values of the traces, else the setting as given."""
    per_set: dict[str, Mapping[str, Any]] = dict(results.settings.get("factset_settings") or {})
    found = [(path, values["noise_std"], values.get("noise_calibration", ""))
             for path, values in per_set.items() if values.get("noise_std") is not None]
    if found:
        texts = [(path, f"{float(std):.4g} ({calibration})" if calibration else f"{float(std):.4g}")
                 for path, std, calibration in found]
        if len({text for _, text in texts}) == 1:
            return (texts[0][1],)
        return tuple(f"{PurePosixPath(path).stem}: {text}" for path, text in texts)
    distinct = list(dict.fromkeys(f"{t.noise.std:.4g} ({t.noise.calibration})" for t in traces))
    if distinct:
        return tuple(distinct)
    given = results.settings.get("noise")
    return (readable(given) if given is not None else "calibrated per fact set",)


def key_settings(results: RunResults, traces: list[Trace], method: Mapping[str, str], badge: str = "") -> list[SettingRow]:
    """The short table: the values a reader needs to judge the verdicts. `method` is the
    run's method, metric and corruption (`run_method`); `badge` marks an approximate method."""
    model = results.model
    shape = ", ".join(part for part in (
        str(model.get("architecture", "") or ""),
        f"{model['n_layers']} layers" if model.get("n_layers") is not None else "",
        str(model.get("dtype", "") or ""),
    ) if part)
    return [
        SettingRow("model", (str(model.get("name") or model.get("spec") or "?"),)),
        SettingRow("architecture", (shape or "?",), mono=False),
        SettingRow("fingerprint", (str(model.get("fingerprint", "") or "")[:12] or "—",)),
        SettingRow("method", (method["method"],), badge=badge),
        SettingRow("metric", (method["metric"],)),
        SettingRow("corruption", (method["corruption"],)),
        SettingRow("samples", _per_factset(results, traces, "samples")),
        SettingRow("noise", _noise_lines(results, traces), mono=False),
        SettingRow("window", _per_factset(results, traces, "window")),
        SettingRow("kinds", _per_factset(results, traces, "kinds")),
        SettingRow("seed", _per_factset(results, traces, "seed")),
    ]


def folded_tables(results: RunResults, rendered_at: str) -> list[SettingsTable]:
    """Everything else, for the folded part of the header."""
    settings = results.settings
    sources: Mapping[str, Any] = settings.get("sources") or {}
    tables = [
        SettingsTable("run", [
            SettingRow("started", (results.started_at,)),
            SettingRow("finished", (results.finished_at,)),
            SettingRow("rendered", (rendered_at,)),
            SettingRow("results schema", (str(results.version),)),
        ]),
        SettingsTable("model", flat_rows(results.model)),
        SettingsTable("settings", flat_rows({k: v for k, v in settings.items() if k not in _OWN_TABLES}, sources),
                      with_source=bool(sources)),
    ]
    for path, values in (settings.get("factset_settings") or {}).items():
        values = dict(values)
        own_sources = values.pop("sources", None) or {}
        tables.append(SettingsTable(f"fact set {path}", flat_rows(values, own_sources), with_source=bool(own_sources)))
    if settings.get("stats"):
        tables.append(SettingsTable("trace counts", flat_rows(settings["stats"])))
    tables.append(SettingsTable("versions", flat_rows(results.versions)))
    return tables
