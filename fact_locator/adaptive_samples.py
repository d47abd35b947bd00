"""`samples: auto`: noise draws spent only where a verdict is still open.

A fact starts with 8 draws; a fact whose verdict is not yet decided gets its trace extended
to 16, 32, ... up to `max_samples` (default 64), and stops at the first round where it is
decided. The rounds are `rounds(max_samples)`; their number K = log2(max/8) + 1 (4 for 64)
is the number of looks a fact can have.

The stopping rule is Bonferroni over the looks: every look decides at the level
1 - (1 - L) / K (`decide(..., looks=K)`). Whatever rounds a fact stops at, the chance that
any of its K looks decides wrongly is at most (1 - L), so a decided verdict keeps its level
under the repeated looks. It is simple, needs nothing beyond the t-intervals and the
peak-location probabilities a trace already gives, and with K = 4 costs little width (at
L = 0.95 the t quantile 0.975 becomes 0.994); an anytime-valid confidence sequence would allow
unbounded looks but is wider for so few of them. A fact with per-fact expectations is
decided when every one of them is (passed or failed, not undecided); a fact without them
when its trace is settled (`trace_settled`): its TE interval excludes 0 and, for every kind,
one token category holds the peak with probability >= the level.

Cache: under `samples: auto` a fact's trace-cache key holds "auto" where a fixed run holds
its sample count (`trace_key.py`). The entry is the fact's trace with the draws it has so
far; each round writes the extended trace over it at once. A rerun or a resumed run reads
that trace and looks at it first: an entry a decided fact left is decided again with no
draw computed, and an undecided one is extended from its draws, never recomputed (draw i
depends on the seed and i only, so the extended trace equals a fresh trace of as many).
A fact whose entry holds more draws than a round (an earlier run with other expectations
went further) looks at what it has: one of its K looks, so the rule still holds.

    traces = settle(locator, factset, [(fact, trace), ...], settled, max_samples=64)
    stop = settle_trace(locator, fact, trace, level=0.95)   # one fact without expectations
    stop.message                                            # "settled at 95% after 16 samples"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.settings import AUTO_START_SAMPLES

if TYPE_CHECKING:
    from fact_locator.facts import Fact
    from fact_locator.factset import FactSet
    from fact_locator.locator import Locator
    from fact_locator.tracing.trace import Trace

__all__ = ["Settled", "Extend", "Stop", "effective_level", "looks", "rounds", "run_rounds", "settle", "settle_trace",
           "trace_settled"]

# settled(index, trace, looks): is the verdict of fact `index` decided on `trace`?
Settled = Callable[[int, "Trace", int], bool]
# extend(indices, samples): those facts' traces extended to `samples` draws, in that order.
Extend = Callable[[Sequence[int], int], "list[Trace]"]


def rounds(max_samples: int) -> tuple[int, ...]:
    """The draws a fact can have after each round: 8, 16, 32, ... and `max_samples` last."""
    if max_samples < AUTO_START_SAMPLES:
        raise ValueError(f"max_samples must be at least {AUTO_START_SAMPLES}, got {max_samples}")
    out = [AUTO_START_SAMPLES]
    while out[-1] < max_samples:
        out.append(min(2 * out[-1], max_samples))
    return tuple(out)


def looks(max_samples: int) -> int:
    """K: how many times a fact's verdict can be looked at (the Bonferroni divisor)."""
    return len(rounds(max_samples))


def effective_level(level: float, n_looks: int) -> float:
    """The level each look decides at so that all `n_looks` together keep `level`."""
    return 1 - (1 - level) / n_looks


def samples_of(trace: Trace) -> int:
    """How many noise draws a trace holds."""
    if trace.sample_effects is not None:
        return int(trace.sample_effects.n)
    return int(trace.settings.get("samples", 0))


def trace_settled(trace: Trace, level: float, n_looks: int) -> bool:
    """A fact without per-fact expectations is settled when its TE interval excludes 0 and,
    for every kind traced, one token category holds the peak with probability >= the level
    (both at the per-look level)."""
    at = effective_level(level, n_looks)
    te = trace.te_interval(at)
    if te is None or te.low <= 0 <= te.high:
        return False
    for kind in trace.kinds:
        by_category = trace.peak_probability(kind, by="category")
        if not by_category or max(by_category.values()) < at:
            return False
    return True


def run_rounds(traces: Sequence[Trace], settled: Settled, extend: Extend, max_samples: int) -> list[Trace]:
    """The rounds: look at every trace; extend the undecided ones to the next round above
    what they hold (those with the same next round together), until each is decided or
    holds `max_samples` draws. Returns the final traces in order."""
    steps = rounds(max_samples)
    n_looks = len(steps)
    current = list(traces)
    open_ = [i for i, trace in enumerate(current) if not settled(i, trace, n_looks)]
    while True:
        nexts = {i: next((r for r in steps if r > samples_of(current[i])), None) for i in open_}
        open_ = [i for i in open_ if nexts[i] is not None]
        if not open_:
            return current
        target = min(nexts[i] for i in open_)  # type: ignore[type-var]
        group = [i for i in open_ if nexts[i] == target]
        for i, trace in zip(group, extend(group, target)):
            current[i] = trace
            if settled(i, trace, n_looks):
                open_.remove(i)


def settle(locator: Locator, factset: FactSet | None, pairs: Sequence[tuple[Fact, Trace]], settled: Settled,
           max_samples: int | None = None) -> list[Trace]:
    """`run_rounds` through the `Locator`: the facts still undecided at a round are extended
    together (`Locator.extend`, shared forwards, each written to the cache at once)."""
    facts = [fact for fact, _trace in pairs]
    current = [trace for _fact, trace in pairs]

    def extend(indices: Sequence[int], samples: int) -> list[Trace]:
        done = locator.extend([(facts[i], current[i]) for i in indices], samples, factset)
        for i, trace in zip(indices, done):
            current[i] = trace
        return done

    return run_rounds(current, settled, extend, max_samples if max_samples is not None else locator.max_samples)


@dataclass(frozen=True)
class Stop:
    """Where the rounds of one fact without expectations ended: its trace, whether its TE
    and peak settled (`trace_settled`) at `level`, and the most draws it could have had."""

    trace: Trace
    settled: bool
    level: float
    max_samples: int

    @property
    def message(self) -> str:
        """Why the rounds stopped: "settled at 95% after 16 samples", "not settled after 64 samples"."""
        n = samples_of(self.trace)
        if self.settled:
            return f"settled at {self.level:.0%} after {n} samples"
        return f"not settled at {self.level:.0%} after {n} samples, the maximum"


def settle_trace(locator: Locator, fact: Fact, trace: Trace, level: float, factset: FactSet | None = None,
                 max_samples: int | None = None) -> Stop:
    """The rounds of one fact without expectations (`fact-locator trace --samples auto`):
    extended until its TE and peak settle at `level` or it holds `max_samples` draws."""
    top = max_samples if max_samples is not None else locator.max_samples

    def settled(_index: int, current: Trace, n_looks: int) -> bool:
        return trace_settled(current, level, n_looks)

    final = settle(locator, factset, [(fact, trace)], settled, top)[0]
    return Stop(final, trace_settled(final, level, looks(top)), level, top)
