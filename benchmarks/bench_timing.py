"""Timing helpers of the benchmarks: wall time with the GPU's queue drained, peak memory, the
CPU's name, and where a run's time goes (a kernel profile)."""

from __future__ import annotations

import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch


def timed(fn: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def kernel_profile(run: Any, cuda: bool) -> None:
    """Where the time of `run` goes: busy time of the device (kernels) against wall time,
    which says whether the host keeps up, and the operators that take the most of it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        _, wall = timed(run)
    averages = prof.key_averages()
    # torch >= 2.4 says "device" where older versions said "cuda".
    names = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
    attribute = next((n for n in names if hasattr(averages[0], n)), names[-1])
    # On CUDA an operator's self device time is that of the kernels it launched, which are
    # listed as well: the busy time sums the kernels, the table names the operators.
    operators = [e for e in averages if e.device_type == DeviceType.CPU]
    kernels = [e for e in averages if e.device_type != DeviceType.CPU] if cuda else operators
    busy = sum(getattr(e, attribute) for e in kernels) / 1e6
    print(f"\n# profile: {wall:.2f} s wall, {busy:.2f} s {'device kernels' if cuda else 'CPU operators'} "
          f"({busy / wall:.0%} of wall)")
    for e in sorted(operators, key=lambda e: -getattr(e, attribute))[:15]:
        print(f"{getattr(e, attribute) / 1e6:8.3f} s {e.count:8d} calls  {e.key[:90]}")
