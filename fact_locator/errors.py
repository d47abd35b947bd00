"""The error hierarchy of fact-locator: one root, every user-facing failure below it.

    FactLocatorError                 anything the user can fix; the CLI prints one line, exit 2
    ├── UsageError                   a bad option or setting value (samples < 1, unknown kind)
    ├── FactError                    a fact that cannot be traced (subject not in the prompt)
    ├── FactSetError                 a fact-set file problem; carries path and line
    ├── ModelLoadError               a model spec that cannot be resolved or loaded
    │   └── UnsupportedArchitectureError
    ├── DeviceError                  cuda asked for without a GPU, unknown dtype
    ├── TraceError                   a trace went wrong numerically (NaN / inf)
    ├── CacheError                   the trace cache cannot be used
    ├── ResultsError                 a results file that is missing, truncated or of another version
    └── ExpectationFailed            an audit expectation did not hold (carries the outcome)
        └── ExpectationUndecided     it was neither passed nor failed at the confidence level
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CacheError",
    "DeviceError",
    "ExpectationFailed",
    "ExpectationUndecided",
    "FactError",
    "FactLocatorError",
    "FactSetError",
    "ModelLoadError",
    "ResultsError",
    "TraceError",
    "UnsupportedArchitectureError",
    "UsageError",
]


class FactLocatorError(Exception):
    """Root of every error fact-locator raises on purpose."""


class UsageError(FactLocatorError, ValueError):
    """An option or setting has a value the tool cannot use."""


class FactError(FactLocatorError, ValueError):
    """A fact (subject, relation, target) cannot be turned into a traceable prompt."""


class FactSetError(FactLocatorError):
    """A problem in a fact-set file, located by path and (1-based) line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.location_prefix() + message)

    def location_prefix(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "


class ModelLoadError(FactLocatorError):
    """A model spec could not be resolved, fetched, converted or loaded."""


class UnsupportedArchitectureError(ModelLoadError):
    """The model's architecture has no adapter in the table."""


class DeviceError(FactLocatorError):
    """The requested device or dtype is not available."""


class TraceError(FactLocatorError):
    """A trace could not be computed or produced non-finite numbers."""


class CacheError(FactLocatorError):
    """The on-disk trace cache cannot be read or written."""


class ResultsError(FactLocatorError):
    """A saved results or trace file cannot be used."""


class ExpectationFailed(FactLocatorError, AssertionError):
    """An audit expectation did not hold; `outcome` holds what was observed."""

    def __init__(self, message: str, outcome: object | None = None):
        self.outcome = outcome
        super().__init__(message)


class ExpectationUndecided(ExpectationFailed):
    """An audit expectation was undecided at its confidence level (`decide`): the interval
    straddles the threshold. A subclass of ExpectationFailed, so a caller that knows only
    pass/fail never passes it silently; the pytest plugin counts it as --fl-undecided says."""
