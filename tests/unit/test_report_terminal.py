"""The terminal summary (fact_locator.report.terminal.write_summary), on fake results."""

from __future__ import annotations

import re

import pytest
from tests.support.report_fixtures import N_FACTS, evil_results, make_results

from fact_locator.report import write_summary
from fact_locator.results import RunResults

ANSI = re.compile(r"\x1b\[")


def test_contains_facts_te_peaks_outcomes_and_paper_figures():
    results = make_results()
    text = write_summary(results, color=False, width=160)
    for fs in results.factsets:
        assert fs.name in text
        for fact in fs.facts:
            assert fact.id in text
    assert "0.700" in text  # TE = 0.75 - 0.05
    assert "0.750" in text  # p_clean
    # peak sites: L{layer} {token!r} {value:.3f}
    assert "L15 'seum' 0.554" in text
    assert "L5 'le' 0.354" in text
    assert "L22 ' of' 0.201" in text
    for outcome in ("passed", "failed", "xfailed", "skipped", "error"):
        assert outcome in text
    # the failing audit's message and the unknown fact's reason
    assert "expected the last subject token 'le'" in text
    assert "top-1 is ' the', not ' Quux'" in text
    # the paper's GPT-2 XL figures beside ours
    for figure in ("18.6%", "8.7%", "6.6%", "1.6%", "GPT-2 XL", "L~15"):
        assert figure in text
    assert "ATE" in text and "70.0%" in text
    assert "max AIE mlp @ last subject" in text and "35.3% (L5)" in text


def test_fact_outcome_is_worst_audit():
    results = make_results()
    fact = results.factsets[0].facts[0]
    from tests.support.report_fixtures import audit

    fact.outcomes.append(audit(fact.id, "extra", "xpassed", "unexpectedly passed"))
    text = write_summary(results, color=False, width=160)
    row = next(line for line in text.splitlines() if line.strip().startswith("colosseum "))
    assert row.rstrip().endswith("xpassed")


def test_write_line_gets_every_line():
    lines: list[str] = []
    text = write_summary(make_results(), lines.append, color=False, width=120)
    assert lines == text.splitlines()
    assert all("\n" not in line for line in lines)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_width_respected(width):
    text = write_summary(evil_results(), color=False, width=width)
    assert max(len(line) for line in text.splitlines()) <= width


def test_no_ansi_without_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not ANSI.search(write_summary(make_results(), color=False, width=120))
    colored = write_summary(make_results(), color=True, width=120)
    assert ANSI.search(colored)  # colour does something when asked
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ANSI.search(write_summary(make_results(), color=True, width=120))
    assert not ANSI.search(write_summary(make_results(), width=120))
    assert not ANSI.search(write_summary(make_results(), color=True, width=120, quiet=True))


def test_colored_text_has_same_content(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain = write_summary(make_results(), color=False, width=120)
    colored = write_summary(make_results(), color=True, width=120)
    stripped = [line.rstrip() for line in re.sub(r"\x1b\[[0-9;]*m", "", colored).splitlines()]
    assert stripped == plain.splitlines()


def test_quiet_one_line_per_fact_set():
    results = make_results()
    lines: list[str] = []
    text = write_summary(results, lines.append, color=False, width=200, quiet=True)
    assert len(text.splitlines()) == len(results.factsets) == len(lines)
    assert lines[0].startswith(f"landmarks: {N_FACTS - 1} facts (3 traced), ATE 70.0% (paper 18.6%)")
    assert "2 failed" in lines[0] and "1 error" in lines[0]
    assert lines[1].startswith("materials: 1 fact (1 traced)")
    narrow = write_summary(results, color=False, width=50, quiet=True)
    assert len(narrow.splitlines()) == len(results.factsets)
    assert max(len(line) for line in narrow.splitlines()) <= 50


def test_markup_in_results_is_shown_literally():
    text = write_summary(evil_results(), color=False, width=200)
    assert "<script>alert(1)</script>" in text
    assert "[" not in "".join(line for line in text.splitlines() if "alert" in line and "[/" in line)


def test_facts_without_trace_and_empty_results():
    results = make_results()
    for fact in results.factsets[0].facts:
        fact.trace = None
    results.factsets[0].aggregate = None
    text = write_summary(results, color=False, width=120)
    assert "colosseum" in text and "—" in text
    empty = RunResults(model={}, settings={}, versions={}, started_at="", finished_at="")
    assert "fact-locator" in write_summary(empty, color=False, width=80)
    assert write_summary(empty, color=False, width=80, quiet=True) == ""


def test_results_round_trip_renders_the_same(tmp_path):
    results = make_results()
    path = tmp_path / "results.json"
    results.save(path)
    assert write_summary(RunResults.load(path), color=False, width=120) == write_summary(results, color=False, width=120)


def test_one_trace_in_the_terminal_shows_its_numbers_and_a_heatmap_per_kind():
    from io import StringIO

    from rich.console import Console
    from tests.support.report_fixtures import colosseum

    from fact_locator.report.trace_view import render_trace

    trace = colosseum()
    buffer = StringIO()
    render_trace(trace, Console(file=buffer, width=120, color_system=None))
    text = buffer.getvalue()
    assert "p_clean = 0.7500   p_corrupt = 0.0500   TE = 0.7000" in text
    assert "peak IE 0.5540 at layer 15, token 3 'seum' (last_subject)" in text
    assert text.count("## = peak") == len(trace.kinds)
    # one heatmap row per prompt token, subject tokens marked *
    rows = [line for line in text.splitlines() if re.match(r"[* ] '", line)]
    assert len(rows) == len(trace.tokens) * len(trace.kinds)
    assert [r[0] for r in rows[: len(trace.tokens)]] == ["*"] * 4 + [" "] * (len(trace.tokens) - 4)


def test_one_trace_in_the_terminal_shows_its_intervals_when_it_kept_its_noise_samples():
    from io import StringIO

    import numpy as np
    from rich.console import Console
    from tests.support.report_fixtures import colosseum
    from tests.support.trace_factory import make_trace_with_draws

    from fact_locator.report.trace_view import render_trace

    corrupt = [0.1, 0.2, 0.3, 0.4]
    restored = np.array(corrupt) + np.zeros((2, 5, 4))
    restored[1, 2] += [0.30, 0.32, 0.34, 0.36]  # the peak, the same in every resample
    trace = make_trace_with_draws(corrupt, restored)
    buffer = StringIO()
    render_trace(trace, Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    te = trace.te_interval()
    assert f"TE 95% interval [{te.low:.4f}, {te.high:.4f}] over 4 noise samples (t-interval, SE {te.se:.4f})" in text
    peak = trace.ie_interval("mlp")[1][2]
    assert (f"IE 95% interval [{peak.low:.4f}, {peak.high:.4f}]; the peak stays at this site in 100% of resamples "
            "of the noise samples, in a last_subject token in 100%") in text

    buffer = StringIO()
    render_trace(colosseum(), Console(file=buffer, width=120, color_system=None))
    assert "interval" not in buffer.getvalue()  # a trace without its samples shows none


def test_a_fact_set_traced_with_other_draws_than_the_run_says_shows_its_own():
    """A set's own `samples: 5`, or `auto`'s rounds (8 to 64 draws per fact), beside its name;
    a set traced with the run's count shows nothing more."""
    from dataclasses import replace

    results = make_results()
    first, second = results.factsets[0], results.factsets[1]
    first.facts = [replace(f, trace=replace(f.trace, settings=f.trace.settings | {"samples": 5}))
                   if f.trace is not None else f for f in first.facts]
    second.facts = second.facts + [replace(f, id=f"{f.id}-again") for f in second.facts]
    traced = [f for f in second.facts if f.trace is not None]
    for fact, n in zip(traced, (8, 64)):
        fact.trace = replace(fact.trace, settings=fact.trace.settings | {"samples": n})
    text = write_summary(results, color=False, width=200)
    assert f"fact set {first.name} ({first.path}) · {len(first.facts)} facts · samples 5 · " in text
    assert f"({second.path}) · {len(second.facts)} facts · samples 8-64 · " in text
    plain = write_summary(make_results(), color=False, width=200)
    assert "facts · samples" not in plain and "fact · samples" not in plain
