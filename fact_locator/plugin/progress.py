"""Progress in the pytest terminal while a fact traces (10-60 s per fact on a CPU): the
`Locator` sends a `TraceProgress` before the first restoration batch and after each one, and
the listener made here draws it through the terminal reporter.

- On a terminal: a transient note after whatever pytest has written on the current line
  (`factsets/geo.yaml .. tracing geo: colosseum: sites 96/240`), redrawn at most every
  `REDRAW_S` and wiped when the trace is done. The cursor is always moved back to where pytest
  left it (backspaces, written raw), so pytest's own line, its column count and its `[ 40%]`
  stay as they would be; rewriting the line with `\\r` would wipe the file name and the dots.
- In a log (not a terminal, e.g. CI): plain lines, no `\\r` and no escape codes: one when a
  trace starts, one when it is done, and in between one per quarter of the sites at most every
  `LOG_EVERY_S`.
- Nothing under `-q`, nothing in an xdist worker (it has no terminal), nothing for traces read
  from the cache (nothing runs).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytest

from fact_locator.trace_progress import ProgressListener, TraceProgress

__all__ = ["LOG_EVERY_S", "REDRAW_S", "LoggedProgress", "TerminalProgress", "progress_listener"]

REDRAW_S = 0.5
LOG_EVERY_S = 10.0
# Columns kept free at the right edge: a write into the last column wraps on some terminals.
_RIGHT_MARGIN = 2


def progress_listener(config: pytest.Config) -> ProgressListener | None:
    """The session's listener, or None where nothing is to be drawn."""
    if config.get_verbosity() < 0 or hasattr(config, "workerinput"):
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")
    # While an item runs, pytest captures fd 1, where the reporter writes too (as live logging does).
    uncaptured: Callable[[], AbstractContextManager[Any]] = (
        capture.global_and_fixture_disabled if capture is not None else nullcontext)
    if reporter.isatty():
        return TerminalProgress(reporter, uncaptured)
    return LoggedProgress(reporter, uncaptured)


@dataclass
class TerminalProgress:
    """The transient note on a terminal. `shown`: the columns the note now covers right of
    the cursor."""

    reporter: Any  # pytest.TerminalReporter
    uncaptured: Callable[[], AbstractContextManager[Any]] = nullcontext
    clock: Callable[[], float] = time.monotonic
    shown: int = 0
    _drawn_at: float = field(default=float("-inf"), repr=False)

    def __call__(self, progress: TraceProgress) -> None:
        now = self.clock()
        if progress.finished:
            self._draw("")
        elif progress.started or now - self._drawn_at >= REDRAW_S:
            self._drawn_at = now
            self._draw(self._note(progress))

    def _note(self, progress: TraceProgress) -> str:
        """' tracing <label>: sites d/t', shortened to the room left on the line."""
        tw = self.reporter._tw  # pytest's TerminalWriter: the only place that knows the column
        room = tw.fullwidth - tw.width_of_current_line - _RIGHT_MARGIN
        note = f" tracing {_one_cell_each(progress.label)}: {progress.counts}"
        if len(note) > room:
            note = f" {progress.counts}"
        return note if len(note) <= room else ""

    def _draw(self, note: str) -> None:
        if not note and not self.shown:
            return
        text = note.ljust(self.shown)
        with self.uncaptured():
            self.reporter.write_raw(text + "\b" * len(text), flush=True)
        self.shown = len(note)


@dataclass
class LoggedProgress:
    """Plain lines for a log."""

    reporter: Any  # pytest.TerminalReporter
    uncaptured: Callable[[], AbstractContextManager[Any]] = nullcontext
    clock: Callable[[], float] = time.monotonic
    _started_at: float = field(default=0.0, repr=False)
    _logged_at: float = field(default=0.0, repr=False)
    _quarter: int = field(default=0, repr=False)

    def __call__(self, progress: TraceProgress) -> None:
        now = self.clock()
        if progress.started:
            self._started_at = self._logged_at = now
            self._quarter = 0
            self._line(f"fact-locator: tracing {progress.label}: {progress.counts}")
        if progress.finished:
            self._line(f"fact-locator: traced {progress.label}: {progress.counts} in {now - self._started_at:.1f} s")
            return
        quarter = 4 * progress.sites_done // max(progress.sites_total, 1)
        if quarter > self._quarter and now - self._logged_at >= LOG_EVERY_S:
            self._quarter, self._logged_at = quarter, now
            self._line(f"fact-locator: tracing {progress.label}: {progress.counts}")

    def _line(self, text: str) -> None:
        with self.uncaptured():
            # On a line of its own: pytest's next result starts a new line after it.
            self.reporter.write_line(text)
            self.reporter.flush()


def _one_cell_each(text: str) -> str:
    """`text` with every character that is not one terminal column wide (wide, combining,
    control) shown as '?': the note is erased by counting columns."""
    return "".join(
        c if c.isprintable() and not unicodedata.combining(c) and unicodedata.east_asian_width(c) not in "WF" else "?"
        for c in text)
