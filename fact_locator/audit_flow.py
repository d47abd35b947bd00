"""The rules of an audit, in one place: when a fact counts as known, what a fact set's unknown
rule (skip, fail, trace) does with a fact, which facts enter the set's aggregate, and when
severed paths are computed. The pytest plugin (`plugin/collection.py`) only turns the verdicts
into skips, failures and records. Nothing here imports pytest or torch.

    verdict = audit_fact(locator, factset, spec, rule="skip")
    verdict.status          # "traced", "unknown" or "error"; verdict.trace when traced
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.adaptive_samples import Settled, looks, samples_of, settle, trace_settled
from fact_locator.errors import FactLocatorError
from fact_locator.expectations.outcome import Verdict

if TYPE_CHECKING:
    from fact_locator.facts import Fact
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.locator import Locator
    from fact_locator.expectations.outcome import Expectation
    from fact_locator.tracing.trace import SeveredPaths, Trace

DEFAULT_LEVEL = 0.95

__all__ = [
    "CleanCheck",
    "FactVerdict",
    "audit_fact",
    "aggregate_verdicts",
    "decided",
    "enters_aggregate",
    "fact_settled",
    "is_known",
    "level_for",
    "rounds_open",
    "settle_facts",
    "settle_together",
    "severed_once",
    "traced_reason",
    "will_trace",
]


def is_known(top1: bool, p_target: float, min_p_clean: float) -> bool:
    """The first-token rule (the clean top-1 token is the target's first token) plus the fact
    set's floor on the target's clean probability. `CleanCheck.known` applies ROME's stricter
    rule when the check was made under `known_rule: greedy_target`."""
    return top1 and p_target >= min_p_clean


@dataclass(frozen=True)
class CleanCheck:
    """The clean run's verdict on one fact. Under `rule` greedy_target (ROME's, the default
    of the Locator) a fact is known when the greedy continuation of as many tokens as the
    target has (`greedy_ids`) is the target (`target_ids`); under first_token when the top-1
    token is the target's first. Both also need p_target >= min_p_clean. A check built
    without the continuation (`greedy_ids` empty) can only apply the first-token rule."""

    top_token: str
    p_top: float
    target_token: str
    p_target: float
    min_p_clean: float = 0.0
    greedy_ids: tuple[int, ...] = ()
    target_ids: tuple[int, ...] = ()
    greedy_text: str = ""
    target_text: str = ""
    rule: str = "first_token"

    @property
    def top1(self) -> bool:
        return self.top_token == self.target_token

    @property
    def greedy_match(self) -> bool:
        """The greedy continuation is the whole target (ROME's rule, without the floor)."""
        return bool(self.target_ids) and self.greedy_ids == self.target_ids

    @property
    def known(self) -> bool:
        if self.rule == "greedy_target" and self.target_ids:
            return self.greedy_match and self.p_target >= self.min_p_clean
        return is_known(self.top1, self.p_target, self.min_p_clean)

    @property
    def reason(self) -> str:
        """Why the fact counts as unknown ('' when it is known)."""
        if not self.top1:
            return (f"model predicts {self.top_token!r} (p={self.p_top:.2f}), "
                    f"target {self.target_token!r} has p={self.p_target:.2f}")
        if self.rule == "greedy_target" and self.target_ids and not self.greedy_match:
            return (f"model continues {self.greedy_text!r} (greedy, {len(self.target_ids)} tokens), "
                    f"not the target {self.target_text!r} (known_rule greedy_target)")
        if self.p_target < self.min_p_clean:
            return (f"model predicts the target {self.target_token!r} but with p={self.p_target:.2f} "
                    f"< min_p_clean {self.min_p_clean:g}")
        return ""


def traced_reason(trace: Trace, factset: FactSet, clean: CleanCheck | None = None) -> str:
    """'' for a known fact; for one traced under `unknown: trace`, why it counts as unknown:
    by `clean` when given (the known rule in force), else by the trace's first-token rule."""
    if clean is not None:
        return "" if clean.known else f"traced although unknown: {clean.reason}"
    if is_known(trace.known, trace.p_clean, factset.min_p_clean):
        return ""
    if not trace.known:
        return f"traced although unknown: model predicts {trace.top_token!r}, target {trace.target_token!r} has p={trace.p_clean:.2f}"
    return f"traced although unknown: p_clean {trace.p_clean:.2f} < min_p_clean {factset.min_p_clean:g}"


@dataclass
class FactVerdict:
    """What the audit made of one fact: traced (`trace`), unknown to the model under skip or
    fail (`clean` says why; not traced), or an error (`error`, e.g. a prompt that does not
    tokenize)."""

    spec: FactSpec
    trace: Trace | None = None
    clean: CleanCheck | None = None
    error: FactLocatorError | None = None
    reason: str = ""

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "traced" if self.trace is not None else "unknown"


def audit_fact(locator: Locator, factset: FactSet, spec: FactSpec, rule: str,
               companions: Iterable[Fact] = (), round_mates: Iterable[FactSpec] = ()) -> FactVerdict:
    """The fact's verdict under `rule`: skip and fail run the clean check first and trace
    only a known fact; trace traces every fact. `companions` go to `Locator.trace`. Under
    `samples: auto`, `round_mates` (other facts of the set this session will trace) take
    their first round now and run the later rounds together with this fact
    (`settle_together`; read only once this fact is traced): their traces wait in the
    Locator for their own calls."""
    clean: CleanCheck | None = None
    try:
        if rule != "trace":
            clean = locator.clean(spec.fact, factset)
            if not clean.known:
                return FactVerdict(spec, clean=clean, reason=clean.reason)
        trace = locator.trace(spec.fact, factset, companions=companions)
        if locator.adaptive_max(factset) is not None:  # samples: auto: more rounds while its verdicts are open
            trace = settle_together(locator, factset, spec, trace, round_mates)
    except FactLocatorError as exc:
        return FactVerdict(spec, error=exc, reason=str(exc))
    if clean is None:
        try:  # under `unknown: trace`, the known rule in force says whether the fact was known
            clean = locator.clean(spec.fact, factset)
        except FactLocatorError:
            clean = None  # e.g. Ray actors ran no clean run under `trace`: the trace's first-token rule
    return FactVerdict(spec, trace=trace, clean=clean, reason=traced_reason(trace, factset, clean))


def settle_together(locator: Locator, factset: FactSet, spec: FactSpec, trace: Trace,
                    round_mates: Iterable[FactSpec] = ()) -> Trace:
    """Under `samples: auto`: the rounds of `spec` (first round `trace`) and of `round_mates`
    together, so that each round extends the facts still open in shared forwards
    (`adaptive_samples.settle`). Each fact stops at the round it would stop at alone (its
    own expectations decide it; draw i depends on the seed and i only), so its draws and
    verdicts are those of the one-at-a-time path. A mate whose first round fails is left to
    its own call, which reports the error; if the shared rounds fail, `spec` goes alone."""
    mates = list(round_mates)
    pairs = [(spec, trace)]
    for i, mate in enumerate(mates):
        try:  # the later mates are companions: the engine traces same-shape facts together
            pairs.append((mate, locator.trace(mate.fact, factset, companions=(m.fact for m in mates[i + 1:]))))
        except FactLocatorError:
            continue
    try:
        return settle_facts(locator, factset, pairs)[0]
    except FactLocatorError:
        if len(pairs) == 1:
            raise
        return settle_facts(locator, factset, pairs[:1])[0]


def settle_facts(locator: Locator, factset: FactSet, pairs: Sequence[tuple[FactSpec, Trace]]) -> list[Trace]:
    """Under `samples: auto`, the rounds of several facts of `factset` from the traces they
    hold (`adaptive_samples.settle`), each stopping when its own expectations are decided
    (`fact_settled`) at the level (`level_for`) or at the Locator's most draws."""
    level = level_for(locator, factset)
    rules = [fact_settled(factset, spec, level) for spec, _trace in pairs]

    def settled(index: int, current: Trace, n_looks: int) -> bool:
        return rules[index](index, current, n_looks)

    return settle(locator, factset, [(spec.fact, trace) for spec, trace in pairs], settled, locator.adaptive_max(factset))


def rounds_open(locator: Locator, factset: FactSet, spec: FactSpec, trace: Trace) -> bool:
    """Under `samples: auto`, whether `settle_facts` would extend this trace: its verdict is
    still open and it holds fewer than the most draws. Needs no model (the Ray driver asks
    it of the traces its cache holds)."""
    top = locator.adaptive_max(factset)
    if top is None or samples_of(trace) >= top:
        return False
    return not fact_settled(factset, spec, level_for(locator, factset))(0, trace, looks(top))


def level_for(locator: Locator, factset: FactSet | None) -> float:
    """The confidence level verdicts are decided at: the session's (`confidence`), else the
    fact set's, else 0.95."""
    level = locator.overrides.get("confidence")
    if level is None and factset is not None:
        level = factset.settings.get("confidence")
    return float(level) if level is not None else DEFAULT_LEVEL


def fact_settled(factset: FactSet, spec: FactSpec, level: float) -> Settled:
    """Under `samples: auto`, whether a fact needs no more draws: every per-fact expectation
    (the set's and its own) is decided at `level` over the looks, or, with none, its trace
    is settled (`adaptive_samples.trace_settled`)."""
    expectations = [e.expectation for e in factset.fact_expectations(spec) if e.scope == "fact"]

    def settled(_index: int, trace: Trace, looks: int) -> bool:
        if not expectations:
            return trace_settled(trace, level, looks)
        return all(decided(expectation, trace, level, looks) for expectation in expectations)

    return settled


def decided(expectation: Expectation, trace: Trace, level: float, looks: int) -> bool:
    """Whether `expectation` passes or fails (is not undecided) on `trace` at `level` over `looks`."""
    from fact_locator.expectations import decide

    return decide(expectation, trace, level=level, looks=looks).verdict is not Verdict.UNDECIDED


def will_trace(locator: Locator, fact: Fact, factset: FactSet, rule: str) -> bool:
    """Whether the audit will trace this fact: known, or any fact under `unknown: trace`
    (a fact whose clean run fails is not: its own item reports the error)."""
    if rule == "trace":
        return True
    try:
        return locator.clean(fact, factset).known
    except FactLocatorError:
        return False


def aggregate_verdicts(locator: Locator, factset: FactSet, rule: str,
                       companions: Callable[[FactSpec], Iterable[Fact]],
                       round_mates: Callable[[FactSpec], Iterable[FactSpec]] = lambda _spec: ()) -> Iterator[FactVerdict]:
    """The verdict of every fact of the set, in file order, selected or not: an aggregate
    needs them all. Lazy, so a caller can record each as it comes. `round_mates(spec)`:
    the facts whose `samples: auto` rounds run with `spec`'s (`audit_fact`)."""
    for spec in factset.facts:
        yield audit_fact(locator, factset, spec, rule, companions(spec), round_mates(spec))


def enters_aggregate(verdict: FactVerdict) -> bool:
    """A fact set's ATE/AIE average its traced facts: the known ones, or all that trace
    under `unknown: trace`; unknown facts and errors stay out."""
    return verdict.trace is not None


def severed_once(locator: Locator, factset: FactSet, spec: FactSpec, done: set[tuple[str, str]],
                 key: tuple[str, str]) -> SeveredPaths | None:
    """A traced fact's severed paths at its last subject token, the first time `key` asks
    (`done` remembers); None after that."""
    if key in done:
        return None
    done.add(key)
    return locator.severed(spec.fact, factset)
