"""One item's verdict from its setup, call and teardown reports, as the results file records
it: passed, failed, skipped, xfailed, xpassed, error or undecided, with the message that explains it.
An undecided expectation (the item's JUnit property fl_verdict=undecided) is recorded as
'undecided', with how pytest counted it (--fl-undecided) in `counted_as`."""

from __future__ import annotations

import pytest

from fact_locator.results.builder import RecordedOutcome

__all__ = ["fold_report"]

# A failure's traceback in the results file is cut here: the report shows the message, not pages.
_LONGREPR_LIMIT = 4000


def fold_report(rec: RecordedOutcome, report: pytest.TestReport, message: str) -> None:
    """Fold one phase's report into `rec`. `message` is what the item itself said (its
    expectation's outcome), preferred over pytest's long report."""
    rec.duration += report.duration
    xfail = hasattr(report, "wasxfail")
    if report.when == "teardown":
        if report.failed:
            rec.outcome, rec.message = "error", _longrepr_text(report)
        return
    if report.when == "setup":
        if report.failed:
            rec.outcome, rec.message = "error", message or _longrepr_text(report)
        elif report.skipped:
            rec.outcome = "xfailed" if xfail else "skipped"
            rec.message = getattr(report, "wasxfail", "") if xfail else _skip_reason(report)
        return
    if report.passed:
        rec.outcome = "xpassed" if xfail else "passed"
        rec.message = message or (f"xfail reason: {report.wasxfail}" if xfail else "")
    elif report.skipped:
        rec.outcome = "xfailed" if xfail else "skipped"
        rec.message = (message or report.wasxfail) if xfail else _skip_reason(report)
    else:
        rec.outcome, rec.message = "failed", message or _longrepr_text(report)
    if dict(report.user_properties).get("fl_verdict") == "undecided":
        rec.counted_as, rec.outcome = rec.outcome, "undecided"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return str(longrepr or "")


def _longrepr_text(report: pytest.TestReport, limit: int = _LONGREPR_LIMIT) -> str:
    text = report.longreprtext or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."
