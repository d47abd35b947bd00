"""Deciding an expectation at a confidence level: passed, failed or undecided.

`decide(expectation, target, level=..., looks=...)` asks the expectation's own
`decide(target, level)` method (every built-in kind has one) at the effective level
1 - (1 - L) / looks, where L is the expectation's own level if set (its `confidence:`, or the
`level:` an `ate`/`aie` was written with), else `level`.
Dividing the error rate by the number of looks (Bonferroni) keeps a verdict valid when the
adaptive rounds (`adaptive_samples.py`) look at the same fact several times.

The rules (docs/statistics.md):
- a numeric expectation passes when its interval at the level lies wholly where the
  comparison holds, fails when it lies wholly where it does not, and is undecided when it
  straddles the threshold (`interval_verdict`);
- a peak expectation passes when the probability that the peak sits in the asked region
  (bootstrap over the noise draws) is >= the level, fails when it is <= 1 - level, and is
  undecided between (`probability_verdict`);
- a trace without per-sample values (older files, one draw) is decided by the point value,
  as `check` does, and the message says so (`point_rule`).
A kind without a `decide` method (a plugin's) is decided by its `check`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fact_locator.expectations.outcome import Expectation, Outcome, Verdict, check
from fact_locator.expectations.parsing import Threshold

if TYPE_CHECKING:
    from fact_locator.tracing.trace import Trace

__all__ = ["DEFAULT_LEVEL", "decide", "effective_level", "format_level", "has_draws", "interval_verdict", "own_level",
           "peak_region_probability", "point_rule", "pop_run_level", "probability_verdict", "push_run_level", "run_level",
           "verdict_outcome", "verdict_words"]

DEFAULT_LEVEL = 0.95
POINT_RULE_NOTE = "decided by the point value: the trace kept no per-sample values"
NO_DRAWS_NOTE = "decided by the point value: the aggregate kept no per-draw data"


# The level `assert_expectation` decides at when given none: the pytest run's --fl-confidence
# (the plugin pushes it at configure and pops it at unconfigure; a stack, for pytester's runs
# inside a run), else DEFAULT_LEVEL.
_RUN_LEVELS: list[float] = []


def push_run_level(level: float | None) -> None:
    """Set the run's level (None: the default) until the matching `pop_run_level`."""
    _RUN_LEVELS.append(DEFAULT_LEVEL if level is None else check_confidence(level))


def pop_run_level() -> None:
    if _RUN_LEVELS:
        _RUN_LEVELS.pop()


def run_level() -> float:
    """The current pytest run's confidence level, else DEFAULT_LEVEL."""
    return _RUN_LEVELS[-1] if _RUN_LEVELS else DEFAULT_LEVEL


def has_draws(target: Any) -> bool:
    """Whether a Trace kept >= 2 noise draws or an Aggregate per-draw data, so that `decide`
    has intervals to decide by."""
    if hasattr(target, "sample_effects"):
        return (getattr(target, "n_samples", None) or 0) >= 2
    return bool(getattr(target, "draws", None) or getattr(target, "curve_draws", None))


def check_confidence(level: Any, where: str = "confidence") -> float:
    """A confidence level strictly between 0 and 1, else ValueError with one line naming it."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < float(level) < 1:
        raise ValueError(f"{where}: a confidence level is a number between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def effective_level(level: float, looks: int = 1) -> float:
    """The level each of `looks` looks decides at so that all of them together keep `level`."""
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        raise ValueError(f"looks must be an integer >= 1, got {looks!r}")
    return 1 - (1 - check_confidence(level)) / looks


def format_level(level: float) -> str:
    """95%, 99%, 98.75%: the level as a percentage without trailing zeros."""
    text = f"{100 * level:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def interval_verdict(threshold: Threshold, low: float, high: float) -> Verdict:
    """Passed when the comparison holds at both ends of [low, high], failed when at neither
    (the interval lies wholly on one side), undecided when it straddles the threshold."""
    at_low, at_high = threshold.holds(low), threshold.holds(high)
    if at_low and at_high:
        return Verdict.PASSED
    if not at_low and not at_high:
        return Verdict.FAILED
    return Verdict.UNDECIDED


def probability_verdict(probability: float, level: float) -> Verdict:
    """Passed when `probability` >= level, failed when <= 1 - level, undecided between."""
    if probability >= level:
        return Verdict.PASSED
    if probability <= 1 - level:
        return Verdict.FAILED
    return Verdict.UNDECIDED


def peak_region_probability(trace: Trace, kind: str, in_region: Callable[[int, int], bool]) -> float | None:
    """The probability (bootstrap over the noise draws) that `kind`'s peak site (layer, token)
    lies where `in_region` says; None where the trace kept too few draws (the point rule then)."""
    sites = trace.peak_probability(kind, by="site") if (trace.n_samples or 0) >= 2 else None
    if sites is None:
        return None
    return sum(p for (layer, token), p in sites.items() if in_region(layer, token))  # type: ignore[misc]


def verdict_words(verdict: Verdict, level: float, count: str) -> str:
    """'holds at 95% after 64 samples', 'undecided at 95% after 64 samples' (`count`: what
    the interval rests on, e.g. '64 samples' or '12 facts x 10 samples')."""
    verb = {Verdict.PASSED: "holds", Verdict.FAILED: "does not hold", Verdict.UNDECIDED: "undecided"}[verdict]
    return f"{verb} at {format_level(level)} after {count}"


def verdict_outcome(verdict: Verdict, message: str, observed: dict[str, Any]) -> Outcome:
    return Outcome(verdict is Verdict.PASSED, message, {**observed, "verdict": verdict.value},
                   undecided=verdict is Verdict.UNDECIDED)


def point_rule(outcome: Outcome, note: str = POINT_RULE_NOTE) -> Outcome:
    """`check`'s outcome, marked as decided by the point value (no per-sample values)."""
    first, _, rest = outcome.message.partition("\n")
    message = f"{first} ({note})" + (f"\n{rest}" if rest else "")
    return Outcome(outcome.passed, message, {**outcome.observed, "point_rule": True}, undecided=outcome.undecided)


def own_level(expectation: Expectation) -> float | None:
    """The expectation's own confidence level, over the session's: its `own_level` (an `ate` or
    `aie` written with `level:` / `at 95%` takes that one when no `confidence:` is given), else
    its `confidence`; None when it has none."""
    own = getattr(expectation, "own_level", None)
    return own if own is not None else getattr(expectation, "confidence", None)


def decide(expectation: Expectation, target: Any, *, level: float, looks: int = 1) -> Outcome:
    """Decide `expectation` on `target` (a Trace or an Aggregate) at a confidence level.

    The effective level is 1 - (1 - L) / looks, L the expectation's own level if set
    (`own_level`: its `confidence:`, or the `level:` of an `ate`/`aie`), else `level`. `Outcome.verdict` is PASSED, FAILED or UNDECIDED. Like `check`, this never
    raises for a bug inside a kind: that becomes a failed outcome.
    """
    own = own_level(expectation)
    at = effective_level(own if own is not None else level, looks)
    method = getattr(expectation, "decide", None)
    if method is None:
        return check(expectation, target)
    try:
        outcome: Outcome = method(target, at)
    except Exception as exc:  # noqa: BLE001 - outcomes never raise (syrupy style)
        return Outcome(False, f"{expectation.id}: the check itself failed: {type(exc).__name__}: {exc}", {"error": repr(exc)})
    return Outcome(outcome.passed, outcome.message, {"level": at, **outcome.observed}, undecided=outcome.undecided)
