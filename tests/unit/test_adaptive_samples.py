"""`samples: auto` (fact_locator/adaptive_samples.py): rounds of 8, 16, 32, ... draws only for
facts whose verdict is still open, up to max-samples; each round extends the cached trace, so
a rerun or a resumed run never recomputes the draws it has; the result equals the reference
loop on the same draws."""

from __future__ import annotations


from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tests.support.reference_check import SUBJECT_FIRST, SUBJECT_LAST, SUBJECT_MIDDLE, TOL, likeliest_target
from tests.support.tiny_models import tiny_loaded

from fact_locator.adaptive_samples import effective_level, looks, rounds, run_rounds, samples_of, settle, trace_settled
from fact_locator.audit_flow import audit_fact
from fact_locator.errors import FactSetError
from fact_locator.factset import parse_factset
from fact_locator.locator import Locator
from fact_locator.settings import SETTINGS, SettingValueError
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.tracer import Tracer

MODEL = "python:tests.support.fl_tiny:llama"
KINDS = ("hidden", "mlp")


@pytest.fixture(scope="module")
def facts() -> list[Any]:
    loaded = tiny_loaded("llama")
    return [likeliest_target(loaded, SUBJECT_FIRST), likeliest_target(loaded, SUBJECT_LAST)]


def factset_text(facts: list[Any], expect: str = "", samples: str = "auto") -> str:
    lines = "\n".join(f"  - {{id: f{i}, subject: {f.subject}, relation: \"{f.relation}\", target: {f.target}}}"
                      for i, f in enumerate(facts))
    return (f"settings: {{samples: {samples}, kinds: [hidden, mlp], window: 2}}\nunknown: trace\n{expect}"
            f"facts:\n{lines}\n")


def factset(facts: list[Any], samples: str = "auto") -> Any:
    return parse_factset(factset_text(facts, samples=samples), "auto.yaml")


class DrawCounter:
    """Counts the noise draws the tracer computes: fresh traces and extensions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fresh = 0
        self.extended = 0
        trace_many, extend_many = Tracer.trace_many, Tracer.extend_many
        counter = self

        def counting_trace_many(self: Tracer, facts: Any, *args: Any, **kwargs: Any) -> list[Trace]:
            counter.fresh += self.settings.samples * len(facts)
            return trace_many(self, facts, *args, **kwargs)

        def counting_extend_many(self: Tracer, items: Any, samples: int, *args: Any, **kwargs: Any) -> list[Trace]:
            counter.extended += sum(max(samples - samples_of(trace), 0) for _fact, trace in items)
            return extend_many(self, items, samples, *args, **kwargs)

        monkeypatch.setattr(Tracer, "trace_many", counting_trace_many)
        monkeypatch.setattr(Tracer, "extend_many", counting_extend_many)


def never(_index: int, _trace: Trace, _looks: int) -> bool:
    return False


def locator(cache: Path, max_samples: int) -> Locator:
    return Locator(model=MODEL, device="cpu", cache_dir=cache, max_samples=max_samples)


def first_round(loc: Locator, fs: Any) -> list[tuple[Any, Trace]]:
    return [(spec.fact, loc.trace(spec.fact, fs)) for spec in fs.facts]


# -- the rounds ------------------------------------------------------------------------------

def test_rounds_double_from_8_up_to_max_samples_and_count_the_looks() -> None:
    assert rounds(64) == (8, 16, 32, 64) and looks(64) == 4
    assert rounds(8) == (8,) and looks(8) == 1
    assert rounds(40) == (8, 16, 32, 40)
    assert effective_level(0.95, 4) == pytest.approx(0.9875)


def test_only_open_facts_get_more_rounds_and_none_beyond_max() -> None:
    """Stand-in traces: fact 0 is decided at once, fact 1 at 32 draws, fact 2 never."""
    asked: list[tuple[list[int], int]] = []
    decided_at = {0: 8, 1: 32, 2: 10**9}

    def settled(index: int, trace: Any, n_looks: int) -> bool:
        assert n_looks == 4  # every look decides at the level over all K looks
        return samples_of(trace) >= decided_at[index]

    def extend(indices: Any, samples: int) -> list[Any]:
        asked.append((list(indices), samples))
        return [SimpleNamespace(sample_effects=None, settings={"samples": samples}) for _ in indices]

    start = [SimpleNamespace(sample_effects=None, settings={"samples": 8}) for _ in range(3)]
    final = run_rounds(start, settled, extend, 64)
    assert [samples_of(t) for t in final] == [8, 32, 64]
    assert asked == [([1, 2], 16), ([1, 2], 32), ([2], 64)]


def test_a_trace_that_holds_more_draws_than_a_round_goes_on_from_what_it_holds() -> None:
    asked: list[int] = []

    def extend(indices: Any, samples: int) -> list[Any]:
        asked.append(samples)
        return [SimpleNamespace(sample_effects=None, settings={"samples": samples}) for _ in indices]

    final = run_rounds([SimpleNamespace(sample_effects=None, settings={"samples": 32})], never, extend, 64)
    assert asked == [64] and samples_of(final[0]) == 64


# -- on a tiny model -------------------------------------------------------------------------

def test_a_fact_far_from_its_threshold_stops_at_8_and_one_near_it_goes_further(tmp_path: Path, facts: list[Any]) -> None:
    fs = factset(facts)
    loc = locator(tmp_path, 64)
    pairs = first_round(loc, fs)
    te_at_8 = [trace.te for _fact, trace in pairs]
    # Fact 0's threshold lies far below its TE; fact 1's sits on its TE after 8 draws.
    thresholds = [te_at_8[0] - 1.0, te_at_8[1]]

    def settled(index: int, trace: Trace, n_looks: int) -> bool:
        interval = trace.te_interval(effective_level(0.95, n_looks))
        assert interval is not None
        return not interval.low <= thresholds[index] <= interval.high

    final = settle(loc, fs, pairs, settled, 64)
    assert final[0].n_samples == 8
    assert final[1].n_samples > 8


def test_max_samples_is_respected(tmp_path: Path, facts: list[Any]) -> None:
    fs = factset(facts[:1])
    loc = locator(tmp_path, 24)
    final = settle(loc, fs, first_round(loc, fs), never)
    assert final[0].n_samples == 24


def test_auto_extends_the_cached_trace_without_recomputing(tmp_path: Path, facts: list[Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fs = factset(facts[:1])
    count = DrawCounter(monkeypatch)
    settle(locator(tmp_path, 16), fs, first_round(locator(tmp_path, 16), fs), never)
    assert (count.fresh, count.extended) == (8, 8)
    # A resumed run that may go further reads the 16 draws and computes only the next 16.
    loc = locator(tmp_path, 32)
    final = settle(loc, fs, first_round(loc, fs), never)
    assert (count.fresh, count.extended) == (8, 24)
    assert final[0].n_samples == 32 and loc.stats["cached"] == 1
    # A rerun computes nothing: the cache holds the 32 draws.
    loc = locator(tmp_path, 32)
    assert settle(loc, fs, first_round(loc, fs), never)[0].n_samples == 32
    assert (count.fresh, count.extended) == (8, 24)


def test_a_fixed_run_never_takes_an_auto_trace_of_more_draws(tmp_path: Path, facts: list[Any]) -> None:
    auto = locator(tmp_path, 16)
    settle(auto, factset(facts[:1]), first_round(auto, factset(facts[:1])), never)
    fixed = locator(tmp_path, 16)
    assert fixed.trace(facts[0], factset(facts[:1], samples="8")).n_samples == 8
    assert fixed.stats["traced"] == 1


def test_an_auto_trace_equals_the_reference_loop_on_the_same_draws(tmp_path: Path, facts: list[Any]) -> None:
    fs = factset(facts[:1])
    loc = locator(tmp_path, 32)
    trace = settle(loc, fs, first_round(loc, fs), never)[0]
    assert trace.noise is not None
    ref = reference_trace(loc.load(), facts[0], KINDS, 32, trace.noise.std, 2, 0)
    assert trace.p_corrupt == pytest.approx(ref["p_corrupt"], abs=TOL)
    for kind in KINDS:
        diff = (torch.tensor(trace.ie[kind]) - torch.tensor(ref["ie"][kind])).abs().max().item()
        assert diff <= TOL, kind


def test_audit_fact_runs_the_rounds_and_a_rerun_computes_nothing(tmp_path: Path, facts: list[Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without per-fact expectations a fact stops when its TE and peak are settled, or at max."""
    fs = factset(facts[:1])
    first = audit_fact(locator(tmp_path, 32), fs, fs.facts[0], "trace")
    assert first.trace is not None and first.trace.n_samples in rounds(32)
    settled_now = trace_settled(first.trace, 0.95, looks(32))
    assert settled_now or first.trace.n_samples == 32
    count = DrawCounter(monkeypatch)
    again = audit_fact(locator(tmp_path, 32), fs, fs.facts[0], "trace")
    assert (count.fresh, count.extended) == (0, 0)
    assert again.trace is not None and again.trace.n_samples == first.trace.n_samples


# -- settings --------------------------------------------------------------------------------

def setting(name: str) -> Any:
    return next(s for s in SETTINGS if s.name == name)


def test_samples_takes_auto_or_a_number_and_max_samples_at_least_8() -> None:
    assert setting("samples").parse("auto") == "auto" and setting("samples").parse("12") == 12
    assert setting("max-samples").default == 64
    with pytest.raises(SettingValueError, match=r"'lots' is not an integer or 'auto' \(a number of noise samples >= 1, or adaptive rounds\)"):
        setting("samples").parse("lots")
    with pytest.raises(SettingValueError, match=r"4 is too small: give an integer >= 8"):
        setting("max-samples").parse("4")


def test_a_fact_set_takes_samples_auto_and_names_the_line_of_a_bad_value(facts: list[Any]) -> None:
    assert factset(facts[:1]).settings["samples"] == "auto"
    with pytest.raises(FactSetError, match=r"auto.yaml:1: settings.samples"):
        factset(facts[:1], samples="lots")


def test_the_locator_starts_auto_at_8_draws_and_knows_its_max(facts: list[Any]) -> None:
    loc = Locator(model=MODEL, device="cpu", max_samples=32, use_cache=False)
    fs = factset(facts[:1])
    assert loc.settings_for(fs).samples == 8 and loc.adaptive_max(fs) == 32
    assert loc.adaptive_max(factset(facts[:1], samples="10")) is None
    assert Locator(model=MODEL, overrides={"samples": "auto"}).adaptive_max(factset(facts[:1], samples="10")) == 64


def test_audit_fact_stops_a_decided_expectation_at_8_and_takes_an_open_one_further(tmp_path: Path, facts: list[Any]) -> None:
    """Per-fact expectations are decided at the level over the K looks (`decide`)."""
    fs = factset(facts[:1])
    te_at_8 = locator(tmp_path, 32).trace(facts[0], fs).te
    far = parse_factset(factset_text(facts[:1], 'expect:\n  - te: ">= -1"\n'), "far.yaml")
    near = parse_factset(factset_text(facts[:1], f'expect:\n  - te: ">= {te_at_8:.6f}"\n'), "near.yaml")
    decided = audit_fact(locator(tmp_path, 32), far, far.facts[0], "trace")
    assert decided.trace is not None and decided.trace.n_samples == 8
    still_open = audit_fact(locator(tmp_path, 32), near, near.facts[0], "trace")
    assert still_open.trace is not None and still_open.trace.n_samples > 8


# -- a fact set's rounds together ------------------------------------------------------------

class ExtendCalls:
    """The facts of each `Tracer.extend_many` call: several in one call share forwards."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        extend_many = Tracer.extend_many
        calls = self

        def recording(self: Tracer, items: Any, samples: int, *args: Any, **kwargs: Any) -> list[Trace]:
            calls.sizes.append(sum(1 for _fact, trace in items if samples_of(trace) < samples))
            return extend_many(self, items, samples, *args, **kwargs)

        monkeypatch.setattr(Tracer, "extend_many", recording)


def three_fact_set(facts: list[Any], te_at_8: list[float]) -> Any:
    """f0 and f1 with a threshold at their own TE after 8 draws (open after the first round),
    f2 far below (decided at once)."""
    thresholds = [te_at_8[0], te_at_8[1], te_at_8[2] - 1.0]
    lines = "\n".join(f"  - {{id: f{i}, subject: {f.subject}, relation: \"{f.relation}\", target: {f.target}, "
                      f"expect: [te: \">= {t:.6f}\"]}}" for i, (f, t) in enumerate(zip(facts, thresholds)))
    return parse_factset(f"settings: {{samples: auto, kinds: [hidden, mlp], window: 2}}\nunknown: trace\n"
                         f"facts:\n{lines}\n", "three.yaml")


def test_a_sets_facts_run_their_rounds_together_with_the_draws_and_verdicts_of_one_at_a_time(
        tmp_path: Path, facts: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit_fact` with `round_mates` (what the plugin passes for the first fact of a set):
    the mates take their first round and every later round is one `extend_many` call for
    the facts still open; each fact ends with the draws, and each expectation with the
    verdict, it gets alone."""
    from fact_locator.expectations import decide

    three = [*facts, likeliest_target(tiny_loaded("llama"), SUBJECT_MIDDLE)]
    plain = factset(three)
    probe = locator(tmp_path / "probe", 32)
    fs = three_fact_set(three, [probe.trace(spec.fact, plain).te for spec in plain.facts])

    def run(together: bool) -> tuple[dict[str, int], dict[str, str], tuple[int, int], list[int]]:
        count, calls = DrawCounter(monkeypatch), ExtendCalls(monkeypatch)
        loc = locator(tmp_path / ("together" if together else "alone"), 32)
        traces = {}
        for i, spec in enumerate(fs.facts):
            mates = fs.facts[i + 1:] if together and i == 0 else ()
            verdict = audit_fact(loc, fs, spec, "trace", round_mates=mates)
            assert verdict.trace is not None
            traces[spec.id] = verdict.trace
        verdicts = {spec.id: decide(spec.expectations[0].expectation, traces[spec.id], level=0.95,
                                    looks=looks(32)).verdict.value for spec in fs.facts}
        return ({k: t.n_samples for k, t in traces.items()}, verdicts, (count.fresh, count.extended), list(calls.sizes))

    alone, together = run(together=False), run(together=True)
    assert together[:3] == alone[:3]  # the same draws per fact, verdicts and draws computed
    assert alone[0]["f2"] == 8 and alone[0]["f0"] > 8 and alone[0]["f1"] > 8
    assert max(alone[3]) == 1  # one fact per extension alone ...
    assert together[3][0] == 2 and len(together[3]) < len(alone[3])  # ... both open facts in one together
