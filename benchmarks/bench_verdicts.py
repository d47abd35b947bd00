"""Per-fact verdicts across noise seeds, and the time to them: fixed 10 draws against
`samples: auto`, on the shipped audits (`audits/`: factsets/landmarks.yaml, cities.yaml and
their position-0 controls landmarks_prefixed.yaml, cities_prefixed.yaml) with the built-in
smollm2-135m.

Stability (`--seeds`): every known fact of a set with per-fact expectations is traced, at
each seed, with the kinds those expectations read (the set's first kind for `te` alone):
- at fixed 10 draws: each expectation's point verdict (`check`, pass or fail, ROME's way) and
  its verdict at the level over one look (`decide(level, looks=1)`: passed, failed, undecided);
- under auto: the rounds of `adaptive_samples.run_rounds`, decided at the level over K looks;
  round 1 is the first 8 of the 10 draws (draw i depends on the seed and i only, so the first
  n draws of a trace are the trace of n draws: `first_draws`), later rounds extend the trace
  (`Tracer.extend`), as the plugin does;
- a check run of `--check-samples` (50) draws at its own seed (`--check-seed`), decided over one
  look, which every decided auto verdict must agree with.
A verdict flips when one seed passes it and another fails it; undecided is counted apart.
A set without per-fact expectations (cities.yaml: aggregates only) has no verdict to flip.
Traces are kept in `--store` (JSON), so an interrupted run resumes without recomputing.

Timing (`--timing-facts`): side by side in one process, for the first facts and seed 0, from
nothing (no cache): the engine at fixed 10 draws, auto (8 draws, then the rounds) and the
naive reference loop (`tracing/reference.py`) at 10 draws, the kinds of the stability run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_verdicts.py --seeds 0,1,2,3,4 --timing-facts 0 \
        --json benchmarks/logs/verdicts.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AUDITED = tuple(ROOT / "factsets" / f"{name}.yaml" for name in ("landmarks", "cities", "landmarks_prefixed", "cities_prefixed"))


@dataclass
class FactRow:
    """One (fact, expectation) across seeds: its verdicts at 10 (point and at the level), under auto
    (and the draws auto used), and in the check run."""

    fact: str
    expectation: str
    point10: list[str] = field(default_factory=list)
    level10: list[str] = field(default_factory=list)
    auto: list[str] = field(default_factory=list)
    auto_draws: list[int] = field(default_factory=list)
    check: str = "-"

    @staticmethod
    def flips(verdicts: list[str]) -> bool:
        return "passed" in verdicts and "failed" in verdicts


@dataclass(frozen=True)
class AuditedFact:
    """A known fact of an audited set, its per-fact expectations and the kinds they read."""

    factset: Any
    spec: Any
    expectations: tuple[Any, ...]
    kinds: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.factset.name}/{self.spec.id}"

    def settled(self, level: float) -> Callable[[int, Any, int], bool]:
        """auto's stopping rule for this fact: every expectation decided, or (none) the trace settled."""
        from fact_locator.adaptive_samples import trace_settled

        def settled(_index: int, trace: Any, n_looks: int) -> bool:
            if not self.expectations:
                return trace_settled(trace, level, n_looks)
            return all(verdict(e, trace, level, n_looks) != "undecided" for e in self.expectations)

        return settled


def first_draws(trace: Any, n: int) -> Any:
    """The trace of the first `n` of `trace`'s draws (exact: draw i depends on the seed and i only)."""
    from fact_locator.tracing.extension import measured_fields
    from fact_locator.tracing.sample_effects import SampleEffects

    if trace.n_samples == n:
        return trace
    effects = trace.sample_effects
    cut = SampleEffects.from_arrays(effects.corrupt_prob_array()[:n], effects.corrupt_value_array()[:n],
                                    {k: effects.restored_array(k)[:, :, :n] for k in effects.restored})
    return replace(trace, **measured_fields(cut), settings=trace.settings | {"samples": n})


def verdict(expectation: Any, trace: Any, level: float, looks: int) -> str:
    """passed, failed or undecided at `level` over `looks` (`fact_locator.expectations.decide`)."""
    from fact_locator.expectations import decide

    return str(decide(expectation, trace, level=level, looks=looks).verdict.value).lower()


def audited_facts(locator: Any, names: str) -> list[AuditedFact]:
    """The audited sets' known facts with per-fact expectations, all or those named (`id` or `set/id`)."""
    from fact_locator.factset import load_factset

    found = []
    for path in AUDITED:
        fs = load_factset(path)
        for spec in fs.facts:
            expectations = tuple(e.expectation for e in fs.fact_expectations(spec) if e.scope == "fact")
            if not spec.known or not expectations:
                continue
            read = sorted({e.kind for e in expectations if isinstance(getattr(e, "kind", None), str)})
            found.append(AuditedFact(fs, spec, expectations, tuple(read) or locator.settings_for(fs).kinds[:1]))
    wanted = [n for n in names.split(",") if n]
    if not wanted:
        return found
    chosen = [f for f in found if f.key in wanted or f.spec.id in wanted]
    missing = set(wanted) - {f.key for f in chosen} - {f.spec.id for f in chosen}
    if missing:
        sys.exit(f"bench_verdicts: no known audited fact with per-fact expectations named {', '.join(sorted(missing))}")
    return chosen


class TraceStore:
    """The longest trace made so far of each (fact, seed), kept as JSON under `root` (None: in
    memory only). `draws(fact, seed, n)` gives the trace of n draws: the first n of a longer one,
    the stored one extended, or a fresh one."""

    def __init__(self, locator: Any, root: Path | None) -> None:
        self.locator = locator
        self.root = root
        self.memory: dict[tuple[str, int], Any] = {}
        self.traced = 0  # draws computed by this run
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def path(self, fact: AuditedFact, seed: int) -> Path | None:
        return None if self.root is None else self.root / f"{fact.key.replace('/', '--')}--seed{seed}.json"

    def draws(self, fact: AuditedFact, seed: int, n: int) -> Any:
        from fact_locator.tracing.trace import Trace
        from fact_locator.tracing.tracer import Tracer

        key, path = (fact.key, seed), self.path(fact, seed)
        stored = self.memory.get(key)
        if stored is None and path is not None and path.exists():
            stored = Trace.load(path)
        if stored is not None and stored.n_samples >= n:
            self.memory[key] = stored
            return first_draws(stored, n)
        settings = replace(self.locator.settings_for(fact.factset), samples=n, seed=seed, kinds=fact.kinds)
        tracer = Tracer(self.locator.load(), settings)
        started = time.perf_counter()
        if stored is None:
            made = tracer.trace(fact.spec.fact, noise=self.locator.noise_for(fact.factset, settings))
        else:
            made = tracer.extend(stored, fact.spec.fact, n)
        done = n - (stored.n_samples if stored is not None else 0)
        self.traced += done
        print(f"seed {seed} {fact.key} ({','.join(fact.kinds)}): {done} draws to {n} in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        self.memory[key] = made
        if path is not None:
            path.write_text(made.to_json(), encoding="utf-8")
        return made


def stability(args: argparse.Namespace, store: TraceStore, facts: list[AuditedFact]) -> list[FactRow]:
    from fact_locator.adaptive_samples import looks, run_rounds, samples_of
    from fact_locator.settings import AUTO_START_SAMPLES

    k = looks(args.max_samples)
    rows: dict[tuple[str, str], FactRow] = {}
    for seed in args.seeds:
        for fact in facts:
            ten = store.draws(fact, seed, 10)
            first = first_draws(ten, AUTO_START_SAMPLES)
            auto = run_rounds([first], fact.settled(args.level),
                              lambda _indices, n, fact=fact, seed=seed: [store.draws(fact, seed, n)], args.max_samples)[0]
            for e in fact.expectations:
                row = rows.setdefault((fact.key, e.id), FactRow(fact.key, e.id))
                row.point10.append("passed" if e.check(ten).passed else "failed")
                row.level10.append(verdict(e, ten, args.level, 1))
                row.auto.append(verdict(e, auto, args.level, k))
                row.auto_draws.append(samples_of(auto))
    if args.check_samples:
        for fact in facts:
            check = store.draws(fact, args.check_seed, args.check_samples)
            for e in fact.expectations:
                rows[(fact.key, e.id)].check = verdict(e, check, args.level, 1)
    return list(rows.values())


def timing(args: argparse.Namespace, locator: Any, facts: list[AuditedFact]) -> list[dict[str, Any]]:
    """Each of the first `--timing-facts` facts from nothing at seed 0: fixed 10, auto, naive 10."""
    from fact_locator.adaptive_samples import run_rounds
    from fact_locator.settings import AUTO_START_SAMPLES
    from fact_locator.tracing.reference import reference_trace

    out = []
    for fact in facts[: args.timing_facts]:
        base = replace(locator.settings_for(fact.factset), seed=0, kinds=fact.kinds)
        noise = locator.noise_for(fact.factset, base)

        started = time.perf_counter()
        TraceStore(locator, None).draws(fact, 0, 10)
        fixed = time.perf_counter() - started

        started = time.perf_counter()
        store = TraceStore(locator, None)
        first = store.draws(fact, 0, AUTO_START_SAMPLES)
        auto = run_rounds([first], fact.settled(args.level), lambda _indices, n: [store.draws(fact, 0, n)],
                          args.max_samples)[0]
        adaptive = time.perf_counter() - started

        started = time.perf_counter()
        reference_trace(locator.load(), fact.spec.fact, fact.kinds, 10, noise.std, base.window, 0)
        naive = time.perf_counter() - started
        row = {"fact": fact.key, "kinds": list(fact.kinds), "fixed10_s": fixed, "auto_s": adaptive,
               "auto_draws": auto.n_samples, "naive10_s": naive}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def summarize(rows: list[FactRow], facts: list[AuditedFact], store: TraceStore, times: list[dict[str, Any]]) -> dict[str, Any]:
    decided_disagree = sum(a != row.check for row in rows for a in row.auto
                           if a != "undecided" and row.check not in ("-", "undecided"))
    return {
        "facts": len(facts),
        "expectations": len(rows),
        "verdicts_per_rule": sum(len(r.auto) for r in rows),
        "point10_flips": sum(FactRow.flips(r.point10) for r in rows),
        "level10_flips": sum(FactRow.flips(r.level10) for r in rows),
        "level10_undecided": sum(v == "undecided" for r in rows for v in r.level10),
        "auto_flips": sum(FactRow.flips(r.auto) for r in rows),
        "auto_undecided": sum(v == "undecided" for r in rows for v in r.auto),
        # A fact's draws are counted once, however many expectations it has.
        "auto_draws_total": sum(sum(r.auto_draws) for r in {r.fact: r for r in rows}.values()),
        "fixed10_draws_total": sum(10 * len(r.point10) for r in {r.fact: r for r in rows}.values()),
        "auto_draws_histogram": {str(n): sum(d == n for r in {r.fact: r for r in rows}.values() for d in r.auto_draws)
                                 for n in sorted({d for r in rows for d in r.auto_draws})},
        "check_undecided": sum(r.check == "undecided" for r in rows),
        "auto_decided_disagreeing_with_check": decided_disagree,
        "level10_decided_disagreeing_with_check": sum(a != row.check for row in rows for a in row.level10
                                                      if a != "undecided" and row.check not in ("-", "undecided")),
        "point10_disagreeing_with_check": sum(a != row.check for row in rows for a in row.point10
                                              if row.check not in ("-", "undecided")),
        "draws_computed": store.traced,
        "timing": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", default="", help="comma-separated fact ids or set/id (default: every known audited fact)")
    parser.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--max-samples", type=int, default=64)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--check-samples", type=int, default=50, help="draws of the run auto's verdicts must agree with (0: none)")
    parser.add_argument("--check-seed", type=int, default=100)
    parser.add_argument("--timing-facts", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--store", type=Path, default=None, help="folder keeping the traces (resume)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from fact_locator.locator import Locator

    torch.set_num_threads(args.threads)
    locator = Locator(model="smollm2-135m", device="cpu", use_cache=False)
    facts = audited_facts(locator, args.facts)
    print(f"{len(facts)} facts, seeds {args.seeds}, max-samples {args.max_samples}, check {args.check_samples} "
          f"draws at seed {args.check_seed}, level {args.level}, torch threads {args.threads}", flush=True)
    store = TraceStore(locator, args.store)
    rows = stability(args, store, facts) if args.seeds else []
    times = timing(args, locator, facts) if args.timing_facts else []
    print("\nfact / expectation | point@10 | level@10 | auto (draws) | check")
    for row in rows:
        print(f"{row.fact} / {row.expectation} | {' '.join(row.point10)} | {' '.join(row.level10)} | "
              f"{' '.join(row.auto)} ({' '.join(map(str, row.auto_draws))}) | {row.check}")
    summary = summarize(rows, facts, store, times)
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": [r.__dict__ for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
