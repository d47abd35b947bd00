"""pytest-xdist support (registered only when xdist is installed), syrupy's way:
each worker puts its results (JSON text) in `config.workeroutput` at session finish, and
the controller merges them as each worker goes down, so one results file comes out. The
controller also tells each worker the --dist mode.

One GPU per worker: with `--fl-device cuda` (or auto), worker gwK sets its own
CUDA_VISIBLE_DEVICES to entry K mod n of the GPU list (`--fl-devices`, else the caller's
CUDA_VISIBLE_DEVICES, else every GPU) before CUDA starts in it. Its model then sits on
`cuda`, its one visible GPU, so the trace cache's key (which holds the device string) is the
same on every worker, unlike `cuda:K`. More workers than GPUs share them in turn: a small
model leaves a GPU idle between kernels, so two workers on it can be faster than one, and a
model too large for two fails with an out-of-memory error naming the device."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fact_locator.plugin.session import DIST_KEY, WORKER_OUTPUT_KEY, FactLocatorSession

__all__ = ["WorkerGpu", "XdistMerge", "assign_worker_gpu", "gpu_for_worker", "gpu_list", "is_worker", "publish",
           "worker_index", "workers_gpus"]

# Devices under which a worker takes a GPU of its own; cuda:N and the CPU keep today's behaviour.
_GPU_DEVICES = ("cuda", "auto")
# In an xdist worker's input: the GPUs the workers take in turn, comma-separated ("" for none).
GPUS_KEY = "fact_locator_gpus"


@dataclass(frozen=True)
class WorkerGpu:
    """The GPU an xdist worker traces on: `gpu`, its CUDA_VISIBLE_DEVICES entry, one of the
    `gpus` the workers take in turn."""

    worker: str
    gpu: str
    gpus: tuple[str, ...]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def publish(config: pytest.Config, fl: FactLocatorSession) -> None:
    """In a worker: hand this worker's results to the controller."""
    config.workeroutput[WORKER_OUTPUT_KEY] = fl.worker_payload()  # type: ignore[attr-defined]


def worker_index(worker_id: str) -> int:
    """gw0 -> 0, gw12 -> 12 (xdist's worker ids)."""
    if not (worker_id.startswith("gw") and worker_id[2:].isdigit()):
        raise ValueError(f"{worker_id!r} is not a pytest-xdist worker id (gw0, gw1, ...)")
    return int(worker_id[2:])


def gpu_for_worker(worker_id: str, gpus: Sequence[str]) -> str:
    """Worker gwK's GPU: entry K of `gpus`, in turn when there are more workers than GPUs."""
    if not gpus:
        raise ValueError("no GPUs to give the workers")
    return gpus[worker_index(worker_id) % len(gpus)]


def gpu_list(option: str | None, environ: Mapping[str, str], count: Callable[[], int]) -> tuple[str, ...]:
    """The GPUs the workers share: `--fl-devices` (already parsed), else the caller's
    CUDA_VISIBLE_DEVICES (as CUDA reads it: entries up to the first empty one), else the
    indices of the `count()` GPUs there are."""
    if option is not None:
        return tuple(option.split(","))
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries: list[str] = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry
                break
            entries.append(entry)
        return tuple(entries)
    return tuple(str(i) for i in range(count()))


def assign_worker_gpu(workerinput: Mapping[str, Any] | None, environ: Any = os.environ) -> WorkerGpu | None:
    """In an xdist worker given a GPU list by the controller: set this process's
    CUDA_VISIBLE_DEVICES to its GPU and say which. None (nothing changed) outside a worker, on
    the CPU, with cuda:N, and where there is no GPU (the model's load then says so)."""
    if workerinput is None or not workerinput.get(GPUS_KEY):
        return None
    worker = str(workerinput["workerid"])
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise pytest.UsageError(
            f"fact-locator: CUDA started in xdist worker {worker} before fact-locator could give it its GPU "
            "(a conftest.py or plugin used torch.cuda at import); leave CUDA alone until the tests run")
    gpus = tuple(str(workerinput[GPUS_KEY]).split(","))
    assigned = WorkerGpu(worker, gpu_for_worker(worker, gpus), gpus)
    environ["CUDA_VISIBLE_DEVICES"] = assigned.gpu
    return assigned


def workers_gpus(device: str, devices: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """In the controller: the GPUs its workers take in turn; () on the CPU or with cuda:N."""
    if device not in _GPU_DEVICES or (device == "auto" and _gpu_count() == 0):
        return ()  # auto on a machine without GPUs: the CPU, whatever --fl-devices says
    return gpu_list(devices, environ, _gpu_count)


def _gpu_count() -> int:
    """How many GPUs the controller sees: none without NVIDIA's driver tools (a CPU machine
    then never imports torch here), else torch's count."""
    if shutil.which("nvidia-smi") is None:
        return 0
    import torch

    return int(torch.cuda.device_count())


class XdistMerge:
    """Controller-side hooks."""

    def __init__(self, fl: FactLocatorSession):
        self.fl = fl
        self._gpus: tuple[str, ...] | None = None  # the workers' GPUs, found for the first worker

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if payload:
            self.fl.merge_worker_payload(payload)

    def gpus(self) -> tuple[str, ...]:
        """The GPUs the workers take in turn, found once."""
        if self._gpus is None:
            self._gpus = workers_gpus(self.fl.options["device"], self.fl.options["devices"])
        return self._gpus

    def header_lines(self) -> list[str]:
        """What the controller's header says of the workers' GPUs (under -n only)."""
        device, devices = self.fl.options["device"], self.fl.options["devices"]
        if not self.fl.config.getoption("numprocesses", None):
            return [f"fact-locator: --fl-devices {devices} unused: no xdist workers (-n)"] if devices else []
        if device not in _GPU_DEVICES:
            return [f"fact-locator: --fl-devices {devices} unused: device={device}"] if devices else []
        gpus = self.gpus()
        if not gpus:
            return [f"fact-locator: xdist workers: no GPU here (device={device}); they share the CPU's threads"]
        return [f"fact-locator: xdist workers take GPUs {','.join(gpus)} in turn (worker gwK: entry K mod {len(gpus)}, "
                "its only visible GPU, as cuda)"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each worker the --dist mode (its own option says "no"): whether all items of
        a fact set come to one worker decides whether it may trace a set's facts together
        (otherwise another worker would trace them again). And the GPUs the workers take."""
        node.workerinput[DIST_KEY] = self.fl.config.getoption("dist", "no")
        node.workerinput[GPUS_KEY] = ",".join(self.gpus())
