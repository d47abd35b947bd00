"""Per-fact verdicts across noise seeds, and the time to them: fixed 10 draws against
`samples: auto`, on the audited fact sets (`audits/`: factsets/landmarks.yaml and cities.yaml)
with the built-in smollm2-135m.

Stability (`--seeds`): for every fact and seed one trace of `--max-samples` (or 50, whichever
is more) draws is made; draw i depends on the seed and i only, so its first n draws are the
trace of n draws (`first_draws`). Each per-fact expectation then gets
- at fixed 10 draws: its point verdict (`check`, pass or fail, ROME's way), and its verdict at
  the level over one look (`decide(level, looks=1)`: passed, failed or undecided);
- under auto: the rounds of `adaptive_samples.run_rounds` on those prefixes, decided at the
  level over K looks;
- at 50 draws: the verdict over one look, which every decided auto verdict must agree with.
A fact without per-fact expectations is counted as settled or not (`trace_settled`).
A verdict flips when one seed passes it and another fails it; undecided is counted apart.

Timing (`--timing-facts`): side by side in one process, for the first facts and seed 0, from
nothing (no cache): the engine at fixed 10 draws, auto (8 draws, then the rounds) and the
naive reference loop (`tracing/reference.py`) at 10 draws, all of `--kinds`.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_verdicts.py --facts colosseum,eiffel-tower --kinds mlp \
        --max-samples 32 --seeds 0,1,2,3,4 --timing-facts 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AUDITED = (ROOT / "factsets" / "landmarks.yaml", ROOT / "factsets" / "cities.yaml")


@dataclass
class FactRow:
    """One (fact, expectation) across seeds: its verdicts at 10 (point and at the level), under auto
    (and the draws auto used), and at 50."""

    fact: str
    expectation: str
    point10: list[str] = field(default_factory=list)
    level10: list[str] = field(default_factory=list)
    auto: list[str] = field(default_factory=list)
    auto_draws: list[int] = field(default_factory=list)
    at50: list[str] = field(default_factory=list)

    @staticmethod
    def flips(verdicts: list[str]) -> bool:
        return "passed" in verdicts and "failed" in verdicts


def first_draws(trace: Any, n: int) -> Any:
    """The trace of the first `n` of `trace`'s draws (exact: draw i depends on the seed and i only)."""
    from fact_locator.tracing.extension import measured_fields
    from fact_locator.tracing.sample_effects import SampleEffects

    effects = trace.sample_effects
    cut = SampleEffects.from_arrays(effects.corrupt_prob_array()[:n], effects.corrupt_value_array()[:n],
                                    {k: effects.restored_array(k)[:, :, :n] for k in effects.restored})
    return replace(trace, **measured_fields(cut), settings=trace.settings | {"samples": n})


def verdict(expectation: Any, trace: Any, level: float, looks: int) -> str:
    """passed, failed or undecided at `level` over `looks` (`decide` of fact_locator.expectations;
    where it is missing, `interim_verdict`)."""
    try:
        from fact_locator.expectations import decide
    except ImportError:
        return interim_verdict(expectation, trace, level, looks)
    return str(decide(expectation, trace, level=level, looks=looks).verdict.value).lower()


def interim_verdict(expectation: Any, trace: Any, level: float, looks: int) -> str:
    """The rule of issue 22 item 2 for the audited sets' two per-fact kinds, at the per-look level
    1 - (1 - level) / looks: `te` by its t-interval against the threshold, `<kind>-peak` by the
    probability that the peak is in the category (passed >= the level, failed <= 1 - the level)."""
    from fact_locator.adaptive_samples import effective_level
    from fact_locator.expectations.peak import PeakAt
    from fact_locator.expectations.te import TeThreshold

    at = effective_level(level, looks)
    if isinstance(expectation, TeThreshold):
        interval = trace.te_interval(at)
        low, high = expectation.threshold.holds(interval.low), expectation.threshold.holds(interval.high)
        return "passed" if low and high else "failed" if not low and not high else "undecided"
    if isinstance(expectation, PeakAt):
        p = trace.peak_probability(expectation.kind, by="category").get(expectation.category, 0.0)
        return "passed" if p >= at else "failed" if p <= 1 - at else "undecided"
    raise SystemExit(f"bench_verdicts: no interim rule for {expectation.id!r}; needs decide()")


def facts_to_run(names: str) -> list[tuple[Any, Any]]:
    """(fact set, fact spec) of the audited sets' known facts, all or those named."""
    from fact_locator.factset import load_factset

    wanted = [n for n in names.split(",") if n] if names else []
    pairs = [(fs, spec) for path in AUDITED for fs in [load_factset(path)] for spec in fs.facts if spec.known]
    if wanted:
        pairs = [(fs, spec) for fs, spec in pairs if spec.id in wanted]
        missing = set(wanted) - {spec.id for _fs, spec in pairs}
        if missing:
            sys.exit(f"bench_verdicts: no known audited fact {', '.join(sorted(missing))}")
    return pairs


def stability(args: argparse.Namespace, locator: Any, pairs: list[tuple[Any, Any]]) -> tuple[list[FactRow], dict[str, Any]]:
    from fact_locator.adaptive_samples import looks, run_rounds, samples_of, trace_settled
    from fact_locator.tracing.tracer import Tracer

    k = looks(args.max_samples)
    rows: dict[tuple[str, str], FactRow] = {}
    settled_counts: dict[str, list[int]] = {}
    for seed in args.seeds:
        # The check run's draws only for the first seed (all seeds with --check-every-seed).
        longest = max(args.max_samples, args.check_samples) if seed == args.seeds[0] or args.check_every_seed \
            else args.max_samples
        for fs, spec in pairs:
            settings = replace(locator.settings_for(fs), samples=longest, seed=seed, kinds=tuple(args.kinds))
            tracer = Tracer(locator.load(), settings)
            started = time.perf_counter()
            full = tracer.trace(spec.fact, noise=locator.noise_for(fs, settings))
            print(f"seed {seed} {spec.id}: {longest} draws in {time.perf_counter() - started:.1f} s", flush=True)
            expectations = [e.expectation for e in fs.fact_expectations(spec)
                            if e.scope == "fact" and getattr(e.expectation, "kind", "mlp") in args.kinds]

            def settled(_i: int, trace: Any, n_looks: int) -> bool:
                if not expectations:
                    return trace_settled(trace, args.level, n_looks)
                return all(verdict(e, trace, args.level, n_looks) != "undecided" for e in expectations)

            auto = run_rounds([first_draws(full, 8)], settled, lambda _idx, n: [first_draws(full, n)], args.max_samples)[0]
            if not expectations:
                settled_counts.setdefault(spec.id, []).append(samples_of(auto))
            ten = first_draws(full, min(10, longest))
            fifty = first_draws(full, args.check_samples) if longest >= args.check_samples else None
            for e in expectations:
                row = rows.setdefault((spec.id, e.id), FactRow(spec.id, e.id))
                row.point10.append("passed" if e.check(ten).passed else "failed")
                row.level10.append(verdict(e, ten, args.level, 1))
                row.auto.append(verdict(e, auto, args.level, k))
                row.auto_draws.append(samples_of(auto))
                row.at50.append(verdict(e, fifty, args.level, 1) if fifty is not None else "-")
    return list(rows.values()), settled_counts


def timing(args: argparse.Namespace, locator: Any, pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    from fact_locator.adaptive_samples import run_rounds, trace_settled
    from fact_locator.tracing.reference import reference_trace
    from fact_locator.tracing.tracer import Tracer

    out = []
    for fs, spec in pairs[: args.timing_facts]:
        base = replace(locator.settings_for(fs), seed=0, kinds=tuple(args.kinds))
        noise = locator.noise_for(fs, base)
        expectations = [e.expectation for e in fs.fact_expectations(spec)
                        if e.scope == "fact" and getattr(e.expectation, "kind", "mlp") in args.kinds]

        def settled(_i: int, trace: Any, n_looks: int) -> bool:
            if not expectations:
                return trace_settled(trace, args.level, n_looks)
            return all(verdict(e, trace, args.level, n_looks) != "undecided" for e in expectations)

        started = time.perf_counter()
        Tracer(locator.load(), replace(base, samples=10)).trace(spec.fact, noise=noise)
        fixed = time.perf_counter() - started

        started = time.perf_counter()
        tracer = Tracer(locator.load(), replace(base, samples=8))
        first = tracer.trace(spec.fact, noise=noise)
        current = [first]

        def extend(_indices: Any, n: int) -> list[Any]:
            current[0] = tracer.extend(current[0], spec.fact, n)
            return [current[0]]

        auto = run_rounds([first], settled, extend, args.max_samples)[0]
        adaptive = time.perf_counter() - started

        started = time.perf_counter()
        reference_trace(locator.load(), spec.fact, tuple(args.kinds), 10, noise.std, base.window, 0)
        naive = time.perf_counter() - started
        row = {"fact": spec.id, "fixed10_s": fixed, "auto_s": adaptive, "auto_draws": auto.n_samples, "naive10_s": naive}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", default="", help="comma-separated fact ids (default: every known audited fact)")
    parser.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--kinds", default="hidden,mlp,attn", type=lambda s: s.split(","))
    parser.add_argument("--max-samples", type=int, default=64)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--check-samples", type=int, default=50, help="draws of the run auto's verdicts must agree with")
    parser.add_argument("--check-every-seed", action="store_true", help="the check run at every seed, not only the first")
    parser.add_argument("--timing-facts", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from fact_locator.locator import Locator

    torch.set_num_threads(args.threads)
    locator = Locator(model="smollm2-135m", device="cpu", use_cache=False)
    pairs = facts_to_run(args.facts)
    print(f"{len(pairs)} facts, seeds {args.seeds}, kinds {args.kinds}, max-samples {args.max_samples}, "
          f"level {args.level}, torch threads {args.threads}", flush=True)
    rows, settled = stability(args, locator, pairs) if args.seeds else ([], {})
    times = timing(args, locator, pairs) if args.timing_facts else []
    print("\nfact / expectation | point@10 | level@10 | auto (draws) | @50")
    for row in rows:
        print(f"{row.fact} / {row.expectation} | {' '.join(row.point10)} | {' '.join(row.level10)} | "
              f"{' '.join(row.auto)} ({' '.join(map(str, row.auto_draws))}) | {' '.join(row.at50)}")
    disagree = sum(a != b for row in rows for a, b in zip(row.auto, row.at50) if a != "undecided" and b != "-")
    summary = {
        "rows": len(rows),
        "point10_flips": sum(FactRow.flips(r.point10) for r in rows),
        "level10_flips": sum(FactRow.flips(r.level10) for r in rows),
        "level10_undecided": sum(v == "undecided" for r in rows for v in r.level10),
        "auto_flips": sum(FactRow.flips(r.auto) for r in rows),
        "auto_undecided": sum(v == "undecided" for r in rows for v in r.auto),
        "auto_decided_disagreeing_with_50": disagree,
        "verdicts": sum(len(r.auto) for r in rows),
        "settled_draws_without_expectations": settled,
        "timing": times,
    }
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": [r.__dict__ for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
