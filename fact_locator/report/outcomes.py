"""Outcomes in the reports: their order (worst first) and the outcome of a fact or a fact set.

Reports read only `RunResults` (never a model, never torch)."""

from __future__ import annotations

from fact_locator.results import AuditOutcome, FactResult, FactSetResult

__all__ = ["OUTCOME_ORDER", "fact_outcome", "fact_reason", "notable", "rank", "set_outcome", "worst"]

# Worst first. "traced" is a fact that was traced but that no audit looked at; "undecided" an
# expectation left open at the confidence level (whatever --fl-undecided counted it as).
OUTCOME_ORDER: tuple[str, ...] = ("failed", "error", "undecided", "xpassed", "passed", "xfailed", "skipped", "traced")
OUTCOME_RANK: dict[str, int] = {name: i for i, name in enumerate(OUTCOME_ORDER)}


def rank(outcome: str) -> int:
    return OUTCOME_RANK.get(outcome, len(OUTCOME_ORDER))


def worst(outcomes: list[str]) -> str:
    return min(outcomes, key=rank) if outcomes else "traced"


def fact_outcome(fact: FactResult) -> str:
    """The worst outcome of the fact's audits; an unknown fact counts as skipped, a fact
    whose trace failed as an error, a traced fact that no audit looked at as 'traced'."""
    candidates = [o.outcome for o in fact.outcomes]
    if fact.status == "unknown":
        candidates.append("skipped")
    elif fact.status == "error":
        candidates.append("error")
    return worst(candidates)


def set_outcome(factset: FactSetResult) -> str:
    return worst([o.outcome for o in factset.outcomes])


def notable(outcomes: list[AuditOutcome]) -> list[AuditOutcome]:
    """Audits worth a message (everything but a plain pass), worst first, stable."""
    found = [o for o in outcomes if o.outcome != "passed"]
    return sorted(found, key=lambda o: rank(o.outcome))


def fact_reason(fact: FactResult) -> str:
    if fact.status == "unknown":
        return fact.status_reason or "the model does not know this fact (clean top-1 is not the target)"
    if fact.status == "error":
        return fact.status_reason or "the trace failed"
    return fact.status_reason
