"""The terminal summary: one table per fact set, then its aggregates beside the paper's.

`write_summary` is what the pytest plugin (through `terminalreporter.write_line`) and the
CLI call. It renders with rich into a string; it never touches a model."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from io import StringIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fact_locator.report.model_and_method import APPROXIMATE_BADGE, model_summary, run_method
from fact_locator.report.outcomes import OUTCOME_ORDER, fact_outcome, fact_reason, notable
from fact_locator.report.paper import PAPER_ATE, PAPER_MODEL, PAPER_N_FACTS, aie_rows
from fact_locator.report.peaks import peak, trace_kinds
from fact_locator.report.percentages import interval_text, pct
from fact_locator.report.severed_paths import severed_text
from fact_locator.results import FactSetResult, RunResults

__all__ = ["write_summary"]

OUTCOME_STYLE = {
    "failed": "bold red",
    "error": "bold red",
    "undecided": "bold magenta",
    "xpassed": "yellow",
    "passed": "green",
    "xfailed": "yellow",
    "skipped": "yellow",
    "traced": "cyan",
}


def _no_color_env() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def _console(color: bool | None, width: int | None) -> tuple[Console, StringIO]:
    if _no_color_env():
        color = False
    elif color is None:
        color = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    if width is None:
        width = shutil.get_terminal_size(fallback=(100, 24)).columns
    width = max(20, int(width))
    buffer = StringIO()
    console = Console(
        file=buffer,
        force_terminal=bool(color),
        no_color=not color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        markup=False,
        emoji=False,
        legacy_windows=False,
        force_jupyter=False,
        soft_wrap=False,
    )
    return console, buffer


def _counts_text(counts: dict[str, int]) -> Text:
    text = Text()
    parts = [(name, counts[name]) for name in OUTCOME_ORDER if counts.get(name)]
    parts += [(name, n) for name, n in counts.items() if name not in OUTCOME_ORDER and n]
    if not parts:
        return Text("no audits")
    for i, (name, n) in enumerate(parts):
        if i:
            text.append(", ")
        text.append(f"{n} {name}", style=OUTCOME_STYLE.get(name, ""))
    return text


def _set_samples(fs: FactSetResult, run_samples: object) -> str | None:
    """'samples 5' or 'samples 8-64' when the set's traces hold other draws than the run header
    says (the set's own `samples:`, or `auto`'s rounds); None when they hold what it says."""
    counts = sorted({int(f.trace.n_samples if f.trace.n_samples is not None else f.trace.settings.get("samples", 0))
                     for f in fs.facts if f.trace is not None})
    if not counts or counts == [run_samples]:
        return None
    return f"samples {counts[0]}" if len(counts) == 1 else f"samples {counts[0]}-{counts[-1]}"


def _set_counts(fs: FactSetResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in fs.outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    for fact in fs.facts:
        for outcome in fact.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    return counts


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _quiet_line(fs: FactSetResult) -> Text:
    traced = sum(1 for f in fs.facts if f.trace is not None)
    line = Text(f"{fs.name}: {_plural(len(fs.facts), 'fact')} ({traced} traced)")
    if fs.aggregate is not None:
        line.append(f", ATE {pct(fs.aggregate.ate)}{interval_text(fs.aggregate, 'ate')} (paper {pct(PAPER_ATE)})")
    line.append(" · ")
    line.append_text(_counts_text(_set_counts(fs)))
    return line


def _fact_table(fs: FactSetResult) -> Table:
    kinds = trace_kinds([f.trace for f in fs.facts])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, expand=False, header_style="bold")
    table.add_column("fact", overflow="fold")
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("TE", justify="right", no_wrap=True)
    for kind in kinds:
        table.add_column(f"{kind} peak", overflow="fold")
    table.add_column("outcome", overflow="fold")
    for fact in fs.facts:
        outcome = fact_outcome(fact)
        trace = fact.trace
        cells: list[Text] = [Text(fact.id)]
        if trace is not None:
            cells += [Text(f"{trace.p_clean:.3f}"), Text(f"{trace.te:.3f}")]
        else:
            cells += [Text("—"), Text("—")]
        for kind in kinds:
            site = peak(trace, kind)
            cells.append(Text(str(site) if site is not None else "—"))
        cells.append(Text(outcome, style=OUTCOME_STYLE.get(outcome, "")))
        table.add_row(*cells)
    return table


def _aggregate_table(fs: FactSetResult) -> Table:
    agg = fs.aggregate
    assert agg is not None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
    table.add_column("aggregate", overflow="fold")
    table.add_column("this run", justify="right", overflow="fold")
    table.add_column(f"{PAPER_MODEL} (paper)", justify="right", overflow="fold")
    table.add_row("facts", str(agg.n_facts), str(PAPER_N_FACTS))
    table.add_row("ATE", pct(agg.ate) + interval_text(agg, "ate"), pct(PAPER_ATE))
    labels = {"last_subject": "last subject", "last": "last token"}
    for kind, category, ours, paper in aie_rows(agg, "L"):
        table.add_row(f"max AIE {kind} @ {labels[category]}", ours, paper)
    return table


def write_summary(
    results: RunResults,
    write_line: Callable[[str], None] | None = None,
    *,
    color: bool | None = None,
    width: int | None = None,
    quiet: bool = False,
) -> str:
    """Render the run's summary; return the text and, if given, write it line by line."""
    console, buffer = _console(color, width)
    if quiet:
        for fs in results.factsets:
            console.print(_quiet_line(fs), no_wrap=True, overflow="ellipsis", crop=True)
    else:
        model = model_summary(results.model)
        settings = results.settings
        head = Text("fact-locator ", style="bold")
        head.append(f"{model['name']} ({model['architecture']}, {model['n_layers']} layers, {model['fingerprint']})")
        shown = [f"{key} {settings[key]}" for key in ("samples", "window", "seed") if key in settings]
        method = run_method(settings, [f.trace for fs in results.factsets for f in fs.facts])
        shown += [f"metric {method['metric']}", f"corruption {method['corruption']}", f"method {method['method']}"]
        head.append(" · " + ", ".join(shown))
        if method["method"] == "atp":
            head.append(f" [{APPROXIMATE_BADGE}]", style="bold yellow")
        console.print(head)
        for fs in results.factsets:
            console.print()
            title = Text(f"fact set {fs.name}", style="bold")
            title.append(f" ({fs.path}) · {_plural(len(fs.facts), 'fact')} · ")
            if (own := _set_samples(fs, settings.get("samples"))) is not None:
                title.append(f"{own} · ")
            title.append_text(_counts_text(_set_counts(fs)))
            console.print(title)
            if fs.facts:
                console.print(_fact_table(fs))
            for fact in fs.facts:
                if fact.trace is None and fact.status in ("unknown", "error"):
                    shown = "SKIPPED" if fact.status == "unknown" else "ERROR"
                    line = Text(f"  {shown} ", style=OUTCOME_STYLE.get(fact_outcome(fact), ""))
                    what = "not known" if fact.status == "unknown" else "not traced"
                    line.append(f"{fact.id} ({what}): {fact_reason(fact)}")
                    console.print(line)
                    continue
                if fact.severed:
                    console.print(Text(f"  severed {fact.id}: {severed_text(fact.severed)}"))
                for outcome in notable(fact.outcomes):
                    if outcome.outcome in ("failed", "error", "undecided", "xpassed"):
                        line = Text(f"  {outcome.outcome.upper()} ", style=OUTCOME_STYLE.get(outcome.outcome, ""))
                        line.append(f"{fact.id} {outcome.expectation}: {outcome.message}".rstrip(": "))
                        if outcome.counted_as:  # an undecided verdict: how --fl-undecided counted it
                            line.append(f" (counted as {outcome.counted_as})")
                        console.print(line)
            if fs.aggregate is not None:
                console.print(_aggregate_table(fs))
            for outcome in fs.outcomes:
                line = Text("  aggregate ")
                line.append(outcome.outcome, style=OUTCOME_STYLE.get(outcome.outcome, ""))
                line.append(f" {outcome.expectation}" + (f": {outcome.message}" if outcome.message else ""))
                console.print(line)
        for outcome in notable(results.outcomes):
            line = Text(f"{outcome.outcome.upper()} ", style=OUTCOME_STYLE.get(outcome.outcome, ""))
            line.append(f"{outcome.nodeid}: {outcome.message}")
            console.print(line)
        total = Text("fact-locator: ")
        total.append_text(_counts_text(results.counts()))
        console.print(total)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    text = "\n".join(lines) + ("\n" if lines else "")
    if write_line is not None:
        for line in lines:
            write_line(line)
    return text
