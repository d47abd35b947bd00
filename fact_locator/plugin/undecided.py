"""An undecided verdict, of a YAML item (`collection._AuditItem._check`) or of a Python audit
(`assert_expectation` raised `ExpectationUndecided`): the test counts as --fl-undecided says
(fail, xfail or skip), with the JUnit property fl_verdict=undecided and the verdict's message
in the results. `assert_expectation` decides at the run's --fl-confidence, which this module
hands to it for the run's duration."""

from __future__ import annotations

import pytest

__all__ = ["count_undecided", "run_level_from"]


def run_level_from(explicit: dict[str, object]) -> float | None:
    """The run's --fl-confidence or its ini key (None: not given, the default applies)."""
    value = explicit.get("confidence")
    return None if value is None else float(value)  # type: ignore[arg-type]


def count_undecided(item: pytest.Item, message: str, counted_as: str) -> None:
    """Mark `item` undecided and raise what --fl-undecided counts it as: xfail and skip raise
    pytest's own outcomes; fail returns, and the caller raises the failure."""
    from fact_locator.plugin.session import MESSAGE_KEY

    item.stash[MESSAGE_KEY] = message
    item.user_properties.append(("fl_verdict", "undecided"))
    if counted_as == "xfail":
        pytest.xfail(message)
    if counted_as == "skip":
        pytest.skip(message)
