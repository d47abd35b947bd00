"""The numbers the README quotes for the method extensions, measured on the shipped fact sets
with the built-in model: AtP's rank correlation with the exact trace, the severed-path shares
and ATE with its bootstrap interval.

    .venv/bin/python benchmarks/method_numbers.py [--factsets factsets/landmarks.yaml,...] [--samples 5]

Exact traces come from the trace cache when `pytest audits` already computed them (same settings).
"""

from __future__ import annotations

import argparse
import statistics
import time

from fact_locator.confidence import ate_interval
from fact_locator.factset import load_factset
from fact_locator.locator import Locator
from fact_locator.tracing.attribution import attribution_patch
from fact_locator.tracing.severed import severed_trace


def spearman(a: list[float], b: list[float]) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factsets", default="factsets/landmarks.yaml,factsets/cities.yaml")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--severed-facts", type=int, default=5, help="facts per set for the severed paths (slow)")
    args = parser.parse_args()
    locator = Locator(device="cpu", overrides={"samples": args.samples})
    for path in args.factsets.split(","):
        factset = load_factset(path)
        known = [spec.fact for spec in factset.facts if locator.clean(spec.fact, factset).known]
        settings = locator.settings_for(factset)
        tracer = locator.tracer(settings)
        noise = locator.noise_for(factset, settings)
        traces, rhos, atp_seconds, exact_seconds = [], {k: [] for k in settings.kinds}, 0.0, 0.0
        for fact in known:
            t0 = time.perf_counter()
            exact = locator.trace(fact, factset)
            exact_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            approx = attribution_patch(tracer, fact, noise)
            atp_seconds += time.perf_counter() - t0
            traces.append(exact)
            start = exact.subject_range[0]
            for kind in settings.kinds:
                # Cells before the subject are 0 in both by construction: rank the rest.
                a = [v for row in exact.ie[kind] for v in row[start:]]
                b = [v for row in approx.ie[kind] for v in row[start:]]
                rhos[kind].append(spearman(a, b))
        interval = ate_interval(traces)
        print(f"## {factset.name}: {len(known)} known facts, samples {settings.samples}, noise {noise.std:.4g}")
        print(f"ATE {interval}")
        for kind, values in rhos.items():
            print(f"AtP Spearman rho vs exact, {kind}: mean {statistics.mean(values):.3f}, min {min(values):.3f}")
        print(f"AtP {atp_seconds / len(known):.2f} s per fact; exact (cache or traced) {exact_seconds / len(known):.2f} s per fact")
        shares = {"mlp": [], "attn": []}
        for fact in known[: args.severed_facts]:
            severed = severed_trace(tracer, fact, noise=noise, tokens="last_subject")
            token = severed.subject_range[1] - 1
            for kind in shares:
                shares[kind].append(severed.share_through(kind, token))
        for kind, values in shares.items():
            print(f"severed at the last subject token, share through later {kind}: mean {statistics.mean(values):.1%} "
                  f"over {len(values)} facts ({', '.join(f'{v:.0%}' for v in values)})")


if __name__ == "__main__":
    main()
