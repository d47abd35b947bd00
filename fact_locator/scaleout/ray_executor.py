"""`RayExecutor`: the driver's side of a Ray run. It joins a Ray cluster (or starts a local
instance), starts one `TraceWorker` actor per GPU (`num_gpus=1`) or N CPU actors (the CPUs
split between them), checks that every actor loaded the same weights, and runs work units
through a `ray.wait` loop: each actor keeps two units in flight, and each finished unit is
handed to `on_done` at once, so results stream in while the rest runs.

Faults: actors restart forever and their in-flight tasks are retried (`max_restarts=-1`,
`max_task_retries=-1`), so a killed actor costs only the units it had in flight. A unit
whose actor died for good goes to another actor; a unit that raised is answered with an error
for each of its facts (its items fail with the message; the run goes on).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fact_locator.errors import UsageError
from fact_locator.scaleout.ray_actors import TraceWorker
from fact_locator.scaleout.work import ActorInfo, FactOutcome, LocatorConfig, WorkUnit

__all__ = ["RAY_EXTRA_HINT", "RayExecutor", "RayProgress", "import_ray"]

RAY_EXTRA_HINT = "--fl-executor ray needs Ray: pip install 'fact-locator[ray]'"
# Units in flight per actor: one running, one queued, so an actor never waits for the driver.
IN_FLIGHT = 2


def import_ray() -> Any:
    """Ray, or a one-line UsageError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_EXTRA_HINT) from None
    return ray


@dataclass(frozen=True)
class RayProgress:
    """Facts done of the total, and actors alive of those started."""

    phase: str
    done: int
    total: int
    alive: int
    actors: int

    @property
    def line(self) -> str:
        what = {"plan": "facts planned", "severed": "facts' severed paths"}.get(self.phase, "facts traced")
        return f"ray: {self.done}/{self.total} {what}, {self.alive}/{self.actors} actors alive"


@dataclass
class RayExecutor:
    """A pool of trace actors on a Ray cluster. `address`: None starts a local Ray instance
    (`num_cpus`: its CPUs, default all); `workers`: the number of actors (default: one per
    GPU of the cluster, else one CPU actor); `gpus`: whether actors take a GPU each (None:
    when the cluster has GPUs and the device is not cpu)."""

    config: LocatorConfig
    address: str | None = None
    workers: int | None = None
    gpus: bool | None = None
    num_cpus: int | None = None
    on_progress: Callable[[RayProgress], None] | None = None
    actors: list[Any] = field(default_factory=list)
    infos: list[ActorInfo] = field(default_factory=list)
    _started_ray: bool = False

    # -- start and stop --------------------------------------------------------------------------
    def start(self) -> list[ActorInfo]:
        """Start the actors and load the model on each; raises UsageError when a model does
        not load or two actors hold different weights."""
        ray = import_ray()
        if not ray.is_initialized():
            self._init(ray)
        resources = ray.cluster_resources()
        gpus_there = int(resources.get("GPU", 0))
        use_gpus = self.gpus if self.gpus is not None else (gpus_there > 0 and self.config.device != "cpu")
        count = self.workers or (gpus_there if use_gpus else 1)
        if use_gpus:
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            threads = self.config.threads
        else:
            cpus = max(1, int(resources.get("CPU", 1)) // count)
            options, threads = {"num_cpus": cpus}, self.config.threads or cpus
        config = replace(self.config, threads=threads)
        remote = ray.remote(TraceWorker).options(max_restarts=-1, max_task_retries=-1, **options)
        self.actors = [remote.remote(config, f"actor-{i}") for i in range(count)]
        self.infos = ray.get([actor.info.remote() for actor in self.actors])
        self._check_infos()
        return self.infos

    def _init(self, ray: Any) -> None:
        # Ray's own start-up notes stay out of the pytest output; its warnings do not.
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is not None:
            kwargs["address"] = self.address
        else:
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            # Local actors import what the driver can (a python: model, a test factory).
            paths = [p for p in sys.path if p and os.path.isdir(p) and not p.startswith(sys.prefix)]
            env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys([*paths, os.environ.get("PYTHONPATH", "")]))}
            kwargs["runtime_env"] = {"env_vars": env}
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise UsageError(f"--fl-ray-address {self.address}: cannot reach a Ray cluster there ({exc})") from None
        self._started_ray = True

    def _check_infos(self) -> None:
        failed = [info for info in self.infos if info.error is not None]
        if failed:
            raise UsageError(f"model {self.config.model!r} does not load on Ray {failed[0].name}: {failed[0].error}")
        prints = {info.identity.fingerprint for info in self.infos if info.identity is not None}
        if len(prints) > 1:
            seen = ", ".join(f"{i.name}: {i.identity.fingerprint[:12]}" for i in self.infos if i.identity is not None)
            raise UsageError(f"model {self.config.model!r}: the Ray actors loaded different weights ({seen}); "
                             "give every node the same model files")

    def stop(self) -> None:
        """Let the actors go; shut Ray down when this executor started it."""
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def alive(self) -> int:
        """Actors alive now (restarting ones are not); all of them where Ray cannot tell."""
        try:
            from ray._private import state  # the GCS's actor table; the public state API needs the dashboard

            table = state.actors()
        except Exception:  # noqa: BLE001 - an older or newer Ray without it
            return len(self.actors)
        ids = {actor._actor_id.hex() for actor in self.actors}
        return sum(1 for actor_id, row in table.items() if actor_id in ids and row.get("State") == "ALIVE")

    # -- running units ---------------------------------------------------------------------------
    def run(self, units: Sequence[WorkUnit], on_done: Callable[[WorkUnit, list[FactOutcome]], None]) -> None:
        """Run every unit on some actor; `on_done(unit, outcomes)` as each one finishes."""
        ray = import_ray()
        if not self.actors:
            raise UsageError("RayExecutor.run before start()")
        pending = deque(units)
        in_flight: dict[Any, tuple[WorkUnit, int]] = {}
        load = [0] * len(self.actors)
        dead: set[int] = set()
        total = sum(len(u.fact_ids) for u in units)
        done = 0
        phase = units[0].phase if units else "trace"
        self._tell(phase, done, total)
        while pending or in_flight:
            for depth in range(1, IN_FLIGHT + 1):  # first one unit per idle actor, then the queued ones
                for index in range(len(self.actors)):
                    if pending and index not in dead and load[index] < depth:
                        unit = pending.popleft()
                        in_flight[self.actors[index].run.remote(unit)] = (unit, index)
                        load[index] += 1
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                unit, index = in_flight.pop(ref)
                load[index] -= 1
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.ActorDiedError as exc:
                    dead.add(index)  # killed for good (restarts exhausted): another actor takes the unit
                    if len(dead) == len(self.actors):
                        raise UsageError(f"every Ray actor died; the last one: {exc}") from None
                    pending.append(unit)
                    continue
                except ray.exceptions.RayError as exc:
                    cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    error = ("TraceError", f"the Ray actor failed on this fact's chunk: {cause}")
                    outcomes = [FactOutcome(unit.factset_path, f, error=error) for f in unit.fact_ids]
                on_done(unit, outcomes)
                done += len(unit.fact_ids)
                self._tell(phase, done, total)

    def _tell(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(RayProgress(phase, done, total, self.alive(), len(self.actors)))
