"""The `--fl-*` options, resolved: command line > ini (`fl_*`) > the fact set's `settings:`
(trace settings) > the built-in default. The flags and ini keys themselves are generated from
the settings table (`fact_locator.settings`); their argparse defaults are None ("not given
here"), and `resolve_options` fills in the rest. Values stay plain `str`/`int`/`float`/`bool`
so that pytest-xdist can ship them to its workers. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fact_locator.settings import AUTO_NOISE, FACTSET, PLUGIN, SETTINGS, SettingValueError

__all__ = ["OptionError", "ResolvedOptions", "resolve_options"]

# Trace settings a session may override (device and dtype are the session's alone).
_TRACE_OVERRIDES = tuple(s.name for s in SETTINGS if PLUGIN in s.scopes and FACTSET in s.scopes and s.name != "model")


@dataclass(frozen=True)
class ResolvedOptions:
    """Session-level values after command line > ini > default. `explicit` holds the values
    set on the command line or in the ini (they beat a fact set's `settings:`), `sources`
    where each value came from: cli, ini or default."""

    values: dict[str, Any]
    sources: dict[str, str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def explicit(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if self.sources[k] in ("cli", "ini")}

    def trace_overrides(self) -> dict[str, Any]:
        """Trace settings from the command line or ini, in TraceSettings' terms."""
        out: dict[str, Any] = {}
        for name, value in self.explicit.items():
            if name not in _TRACE_OVERRIDES:
                continue
            # kinds travel as "hidden,mlp"; noise None = calibrate, even if a fact set gives a number
            out[name.replace("-", "_")] = tuple(value.split(",")) if name == "kinds" else value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "sources": dict(self.sources)}


class OptionError(ValueError):
    """An ini value that does not parse; the plugin turns it into pytest.UsageError."""


def resolve_options(getoption: Callable[[str], Any], getini: Callable[[str], Any]) -> ResolvedOptions:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SETTINGS:
        if PLUGIN not in spec.scopes:
            continue
        cli = getoption(spec.dest)
        if cli is not None:
            values[spec.name], sources[spec.name] = cli, "cli"
            continue
        raw = getini(spec.dest)
        if raw is not None and str(raw).strip() != "":
            try:
                values[spec.name] = spec.parse(str(raw))
            except SettingValueError as exc:
                raise OptionError(f"ini value {spec.dest} = {raw!r}: {exc}") from None
            sources[spec.name] = "ini"
            continue
        values[spec.name], sources[spec.name] = spec.default, "default"
    if values["noise"] == AUTO_NOISE:
        values["noise"] = None  # 'auto' given explicitly: calibrate
    return ResolvedOptions(values, sources)
