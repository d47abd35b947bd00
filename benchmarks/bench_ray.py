"""Facts per minute through the Ray executor against the in-process Locator, side by side in
one run: the same facts, the same settings, a fresh trace cache for each row.

CPU (default): in-process with all cores and with one thread, then 1 and 2 Ray CPU actors with
one thread each, on a local Ray instance. GPU (`--gpus N`): in-process on one GPU, then N Ray
actors with a GPU each (the goal: at least 0.8 x N times one GPU's facts per minute).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ray.py --facts 8                # CPU, about 5 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_ray.py --gpus 4 --facts 200     # a 4-GPU machine

Actor start-up (Ray, the model load on each actor) is reported apart and not counted in the
facts per minute: a run pays it once however many facts it traces.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_facts import shipped_facts
from fact_locator.cache import TraceCache
from fact_locator.factset import FactSet, load_factset
from fact_locator.locator import Locator
from fact_locator.scaleout.prefetch import Selection, prefetch
from fact_locator.scaleout.ray_executor import RayExecutor
from fact_locator.scaleout.work import LocatorConfig
from fact_locator.tracing.trace import Trace


# Issue 24's goal: N GPU actors give at least this times N one GPU's facts per minute.
GOAL_PER_GPU = 0.8


@dataclass
class Row:
    name: str
    start_s: float
    trace_s: float
    facts: int
    max_die: float

    @property
    def per_minute(self) -> float:
        return 60.0 * self.facts / self.trace_s


def write_factset(folder: Path, n: int) -> FactSet:
    """The first n shipped facts as one fact set (traced under `unknown: trace`: every fact counts)."""
    lines = ["name: bench", "unknown: trace", "facts:"]
    for i, fact in enumerate(shipped_facts(n)):
        lines += [f"  - id: f{i}", f"    subject: {fact.subject!r}", f"    relation: {fact.relation!r}",
                  f"    target: {fact.target!r}"]
    path = folder / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_factset(path)


def max_die(a: Trace, b: Trace) -> float:
    return max(abs(x - y) for kind in a.ie for ra, rb in zip(a.ie[kind], b.ie[kind]) for x, y in zip(ra, rb))


def in_process(args: argparse.Namespace, fs: FactSet, threads: int | None, device: str) -> tuple[Row, dict[str, Trace]]:
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        locator = Locator(model=args.model, device=device, overrides=overrides(args), use_cache=False)
        locator.load()
        locator.noise_for(fs)
        locator.clean(fs.facts[0].fact, fs)  # first-use imports and allocations, as the actors' start-up pays them
        t1 = time.perf_counter()
        traces = {spec.id: locator.trace(spec.fact, fs) for spec in fs.facts}
        t2 = time.perf_counter()
    finally:
        torch.set_num_threads(before)
    label = f"in-process, {device}" + (f", {threads} thread{'s' * (threads > 1)}" if threads else "")
    return Row(label, t1 - t0, t2 - t1, len(traces), 0.0), traces


def on_ray(args: argparse.Namespace, fs: FactSet, workers: int, gpus: bool, reference: dict[str, Trace],
           folder: Path) -> Row:
    device = "cuda" if gpus else "cpu"
    config = LocatorConfig(model=args.model, device=device, overrides=tuple(overrides(args).items()),
                           threads=None if gpus else 1)
    t0 = time.perf_counter()
    executor = RayExecutor(config, workers=workers, gpus=gpus)
    executor.start()
    t1 = time.perf_counter()
    try:
        got = prefetch(executor, [Selection(fs, tuple(s.id for s in fs.facts), "trace")],
                       TraceCache(folder / f"cache-{workers}-{device}"))
    finally:
        executor.stop()
    t2 = time.perf_counter()
    die = max(max_die(reference[fact_id], trace) for (_, fact_id), trace in got.traces.items())
    unit = "GPU" if gpus else "CPU"
    return Row(f"Ray, {workers} {unit} actor{'s' * (workers > 1)}" + ("" if gpus else ", 1 thread each"),
               t1 - t0, t2 - t1, len(got.traces), die)


def overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"samples": args.samples, "kinds": tuple(args.kinds.split(",")), "window": args.window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", type=int, default=8, help="the first N shipped facts")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--kinds", default="hidden,mlp,attn")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--gpus", type=int, default=0, help="N > 0: one GPU in-process against N GPU actors")
    args = parser.parse_args()

    import ray
    import torch

    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"{torch.cuda.device_count()} GPU(s) {torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}")
    print(f"torch {torch.__version__}, ray {ray.__version__}; model {args.model}, {args.facts} facts, "
          f"samples {args.samples}, kinds {args.kinds}, window {args.window}")
    if args.gpus and torch.cuda.device_count() < args.gpus:
        parser.error(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} GPU(s) visible to torch")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fs = write_factset(folder, args.facts)
        rows = []
        if args.gpus:
            base, reference = in_process(args, fs, None, "cuda")
            rows.append(base)
            # One actor per GPU (num_gpus=1 each): Ray gives each its own CUDA_VISIBLE_DEVICES.
            ray.init(num_gpus=args.gpus, include_dashboard=False, log_to_driver=False)
            rows.append(on_ray(args, fs, args.gpus, True, reference, folder))
        else:
            # The actors run one thread each: the one-thread row has their sums, so it is the reference for dIE.
            one, reference = in_process(args, fs, 1, "cpu")
            rows += [in_process(args, fs, cores, "cpu")[0], one]
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            rows += [on_ray(args, fs, n, False, reference, folder) for n in (1, 2)]
        ray.shutdown()
    print("\n| run | start-up s | trace s | facts/min | vs first row | max \\|dIE\\| vs in-process (CPU: 1 thread) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row.name} | {row.start_s:.1f} | {row.trace_s:.1f} | {row.per_minute:.1f} | "
              f"{row.per_minute / rows[0].per_minute:.2f}x | {row.max_die:.1e} |")
    if args.gpus:
        ratio = rows[-1].per_minute / rows[0].per_minute
        goal = GOAL_PER_GPU * args.gpus
        print(f"\nscaling: {args.gpus} GPU actors trace {ratio:.2f}x one GPU in-process; goal >= {goal:.1f}x "
              f"({GOAL_PER_GPU} x {args.gpus}): {'met' if ratio >= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
