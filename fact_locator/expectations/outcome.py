"""What a check returns, the protocol every expectation kind follows, and running one.

A check never raises: `check(expectation, target)` returns an `Outcome` whose message shows
what was observed (syrupy's habit); `assert_expectation` raises `ExpectationFailed` once
(`ExpectationUndecided` when decided at a level and neither passed nor failed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from fact_locator.errors import ExpectationFailed

__all__ = [
    "Expectation",
    "ExpectationBase",
    "Outcome",
    "Scope",
    "Verdict",
    "assert_expectation",
    "check",
    "with_confidence",
    "with_id",
]

Scope = Literal["fact", "aggregate"]
SCOPES: tuple[Scope, ...] = ("fact", "aggregate")


class Verdict(enum.Enum):
    """What an outcome concluded. Callers that must tell more than pass/fail apart read this
    rather than `Outcome.passed`, so a further verdict can join without touching them."""

    PASSED = "passed"
    FAILED = "failed"
    # Decided at a confidence level (`decide`), neither: the interval straddles the threshold.
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Outcome:
    """What a check saw. `message` is readable on its own; `observed` holds the numbers.
    An undecided outcome has `passed` False (a caller that only knows pass/fail never passes
    it silently) and `undecided` True."""

    passed: bool
    message: str
    observed: dict[str, Any] = field(default_factory=dict)
    undecided: bool = False

    @property
    def verdict(self) -> Verdict:
        if self.undecided:
            return Verdict.UNDECIDED
        return Verdict.PASSED if self.passed else Verdict.FAILED


@runtime_checkable
class Expectation(Protocol):
    id: str
    description: str
    scope: Scope

    def check(self, target: Any) -> Outcome: ...


@dataclass(frozen=True)
class ExpectationBase:
    """The base of every expectation class: an id from the kind's fields (`default_id`),
    which the YAML `id:` key (`with_id`) overrides."""

    id_override: str | None = field(default=None, kw_only=True, compare=False)
    # The YAML `confidence:` key: this expectation's own level, over the session's (`decide`).
    confidence: float | None = field(default=None, kw_only=True, compare=False)

    @property
    def id(self) -> str:
        return self.id_override or self.default_id

    @property
    def default_id(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


def check(expectation: Expectation, target: Any) -> Outcome:
    """Run one expectation; a bug inside a check becomes a failed outcome, not an exception."""
    try:
        return expectation.check(target)
    except Exception as exc:  # noqa: BLE001 - outcomes never raise (syrupy style)
        return Outcome(False, f"{expectation.id}: the check itself failed: {type(exc).__name__}: {exc}", {"error": repr(exc)})


def assert_expectation(expectation: Expectation, target: Any, *, level: float | None = None, looks: int = 1) -> None:
    """Raise when the expectation does not hold on `target` (a Trace or an Aggregate).

    A target that kept per-sample draws is decided at a confidence level (`decide`): `level`,
    by default the run's --fl-confidence (or its ini key) inside a pytest run with the plugin,
    else 0.95; `looks` as in `decide`. A failed verdict raises `ExpectationFailed(message,
    outcome)`, an undecided one `ExpectationUndecided` (its subclass), which the plugin counts
    as --fl-undecided says. A target without draws is checked by the point rule (`check`)."""
    from fact_locator.errors import ExpectationUndecided
    from fact_locator.expectations.decision import decide, has_draws, run_level

    if has_draws(target):
        outcome = decide(expectation, target, level=run_level() if level is None else level, looks=looks)
    else:
        outcome = check(expectation, target)
    if outcome.undecided:
        raise ExpectationUndecided(outcome.message, outcome)
    if not outcome.passed:
        raise ExpectationFailed(outcome.message, outcome)


def with_id(expectation: Expectation, new_id: str) -> Expectation:
    """The same expectation under another id (the YAML `id:` key)."""
    return replace(expectation, id_override=new_id)  # type: ignore[type-var]


def with_confidence(expectation: Expectation, level: float) -> Expectation:
    """The same expectation decided at its own confidence level (the YAML `confidence:` key)."""
    return replace(expectation, confidence=level)  # type: ignore[type-var]
