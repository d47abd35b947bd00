"""Progress while a fact traces: the Locator's `TraceProgress` events, the plain lines of a
non-terminal run (a CI log), nothing under -q or from the cache, and the transient note on a
terminal that leaves pytest's own line as it was."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import pytest
from tests.support.pytester_harness import GEO

from fact_locator.plugin.progress import REDRAW_S, LoggedProgress, TerminalProgress, progress_listener
from fact_locator.trace_progress import TraceProgress


def test_the_locator_reports_the_sites_of_each_trace(tmp_path):
    from fact_locator.factset import parse_factset
    from fact_locator.locator import Locator

    events: list[TraceProgress] = []
    fs = parse_factset(GEO, tmp_path / "geo.yaml")
    locator = Locator(model="python:tests.support.fl_tiny:llama", overrides={"samples": 2}, use_cache=False,
                      on_progress=events.append)
    colosseum = fs.facts[0].fact
    locator.trace(colosseum, fs)
    assert events[0].started and events[-1].finished
    assert {e.label for e in events} == {"geo: colosseum"}
    assert len({e.sites_total for e in events}) == 1 and events[0].sites_total > 0
    done = [e.sites_done for e in events]
    assert done == sorted(done)
    events.clear()
    locator.trace(colosseum, fs)  # remembered: nothing runs, nothing to report
    assert events == []


def test_a_log_gets_plain_lines_naming_the_fact_and_its_sites(fl, monkeypatch):
    for name in ("PY_COLORS", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    fl.factset("geo", GEO)
    # A subprocess with its output in a pipe, as in CI, read as bytes: pytester's lines and
    # text mode would both turn a "\r" into a line break.
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=fl.pytester.path,
                          capture_output=True, timeout=300)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    pytest.LineMatcher(out.split("\n")).fnmatch_lines([
        "fact-locator: tracing geo: colosseum: sites 0/*",
        "fact-locator: traced geo: colosseum: sites */* in *s",
        "fact-locator: tracing geo: toyota: sites 0/*",
        "fact-locator: traced geo: toyota: sites */* in *s",
    ])
    assert "\r" not in out and "\x1b" not in out and "\b" not in out

    again = fl.run()  # every trace comes from the cache: nothing runs
    again.assert_outcomes(passed=3, xfailed=1)
    assert "fact-locator: tracing" not in again.stdout.str()


def test_quiet_runs_show_no_progress(fl):
    fl.factset("geo", GEO)
    result = fl.run("-q")
    result.assert_outcomes(passed=3, xfailed=1)
    assert "fact-locator: tracing" not in result.stdout.str()
    assert fl.traced() == ["colosseum", "toyota"]  # the facts were traced all the same


def test_no_listener_under_q_or_in_an_xdist_worker(pytester):
    assert progress_listener(pytester.parseconfigure()) is not None
    assert progress_listener(pytester.parseconfigure("-q")) is None
    worker = pytester.parseconfigure()
    worker.workerinput = {"workerid": "gw0"}  # what xdist gives a worker's config
    assert progress_listener(worker) is None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screen_line(raw: str) -> str:
    """What a terminal shows on the last line of `raw`: backspaces move the cursor left,
    characters overwrite."""
    cells: list[str] = []
    cursor = 0
    for char in raw.rsplit("\n", 1)[-1]:
        if char == "\b":
            cursor = max(cursor - 1, 0)
            continue
        if cursor == len(cells):
            cells.append(char)
        else:
            cells[cursor] = char
        cursor += 1
    return "".join(cells)


@pytest.fixture
def tty_reporter(pytester: pytest.Pytester) -> Iterator[tuple[pytest.TerminalReporter, _Tty]]:
    screen = _Tty()
    reporter = pytest.TerminalReporter(pytester.parseconfig(), screen)
    reporter._tw.fullwidth = 80
    yield reporter, screen


def test_a_terminal_gets_a_note_that_leaves_pytest_s_line_as_it_was(tty_reporter):
    reporter, screen = tty_reporter
    clock = _Clock()
    note = TerminalProgress(reporter, clock=clock)
    reporter.write("factsets/geo.yaml ..")
    width = reporter._tw.width_of_current_line

    note(TraceProgress("colosseum", "geo", 0, 90))
    assert _screen_line(screen.getvalue()) == "factsets/geo.yaml .. tracing geo: colosseum: sites 0/90"
    clock.now += REDRAW_S / 2
    note(TraceProgress("colosseum", "geo", 30, 90))  # too soon: not redrawn
    assert "sites 30/90" not in _screen_line(screen.getvalue())
    clock.now += REDRAW_S
    note(TraceProgress("colosseum", "geo", 60, 90))
    assert _screen_line(screen.getvalue()).endswith("tracing geo: colosseum: sites 60/90")
    note(TraceProgress("colosseum", "geo", 90, 90))
    assert _screen_line(screen.getvalue()).rstrip() == "factsets/geo.yaml .."
    assert reporter._tw.width_of_current_line == width  # pytest's column count is untouched
    reporter.write(".")  # pytest's next dot lands where it would have
    assert _screen_line(screen.getvalue()).rstrip() == "factsets/geo.yaml ..."


def test_the_note_shrinks_to_the_room_left_on_the_line(tty_reporter):
    reporter, screen = tty_reporter
    note = TerminalProgress(reporter, clock=_Clock())
    reporter.write("x" * 60)
    note(TraceProgress("a-fact-with-a-rather-long-id", "geo", 0, 90))
    assert _screen_line(screen.getvalue()) == "x" * 60 + " sites 0/90"
    note(TraceProgress("a-fact-with-a-rather-long-id", "geo", 90, 90))
    assert _screen_line(screen.getvalue()).rstrip() == "x" * 60


def test_log_lines_in_between_come_per_quarter_and_not_too_often(tty_reporter):
    reporter, screen = tty_reporter
    clock = _Clock()
    log = LoggedProgress(reporter, clock=clock)
    log(TraceProgress("colosseum", "geo", 0, 100))
    clock.now += 1
    log(TraceProgress("colosseum", "geo", 30, 100))  # a quarter, but only 1 s after the last line
    clock.now += 20
    log(TraceProgress("colosseum", "geo", 40, 100))
    log(TraceProgress("colosseum", "geo", 45, 100))  # the same quarter
    log(TraceProgress("colosseum", "geo", 100, 100))
    assert screen.getvalue().splitlines() == [
        "fact-locator: tracing geo: colosseum: sites 0/100",
        "fact-locator: tracing geo: colosseum: sites 40/100",
        "fact-locator: traced geo: colosseum: sites 100/100 in 21.0 s",
    ]
