"""What travels between the driver and the Ray actors: plain, picklable data. A unit of work
is a chunk of one fact set, sent as its YAML text (no shared filesystem needed); each fact
comes back as a `FactOutcome`. Imports neither ray nor torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator import errors

if TYPE_CHECKING:
    from fact_locator.locator import CleanCheck
    from fact_locator.models.identity import ModelIdentity
    from fact_locator.tracing.trace import NoiseInfo, SeveredPaths

__all__ = ["ActorInfo", "FactOutcome", "LocatorConfig", "WorkUnit", "actor_stamp", "rebuild_error"]

PLAN = "plan"
TRACE = "trace"
SEVERED = "severed"  # severed paths only: facts whose trace the driver's cache already has


@dataclass(frozen=True)
class LocatorConfig:
    """How each actor builds its `Locator`: the session's model, device, dtype, trace
    overrides, method and (`samples: auto`) most draws per fact. `threads`: torch threads
    per actor (None: leave torch's choice)."""

    model: str
    device: str = "auto"
    dtype: str = "float32"
    overrides: tuple[tuple[str, Any], ...] = ()
    method: str = "exact"
    model_from_factset: bool = True
    threads: int | None = None
    max_samples: int = 64


@dataclass(frozen=True)
class WorkUnit:
    """A chunk of one fact set. `phase` PLAN: clean runs, cache keys and noise only; TRACE:
    the traces too; SEVERED: the severed paths alone. `rule`: the set's unknown rule
    (skip/fail need the clean run first). `severed`: TRACE units compute each fact's
    severed paths too (--fl-severed). `starts`: (fact id, trace JSON) of facts whose
    `samples: auto` rounds go on from a trace the driver's cache holds (only the new draws run)."""

    phase: str
    factset_path: str
    factset_text: str
    fact_ids: tuple[str, ...]
    rule: str = "skip"
    severed: bool = False
    starts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.phase not in (PLAN, TRACE, SEVERED):
            raise ValueError(f"unknown work phase {self.phase!r}")


@dataclass
class FactOutcome:
    """One fact, as an actor saw it. `key`: its trace-cache key; `trace_json`: the trace
    (TRACE units; JSON text, the cache's own format, exact for floats); `error`: (error class name, message)
    when the fact failed for its own reason; `actor`: which actor answered; `severed`: its
    severed paths (or `severed_error`) where the unit asked for them."""

    factset_path: str
    fact_id: str
    model: str = ""
    clean: CleanCheck | None = None
    key: str | None = None
    noise: NoiseInfo | None = None
    trace_json: str | None = None
    error: tuple[str, str] | None = None
    actor: str = ""
    severed: SeveredPaths | None = None
    severed_error: tuple[str, str] | None = None


@dataclass(frozen=True)
class ActorInfo:
    """An actor's answer to "what are you": where it runs (`node`: its node's IP address;
    `gpus`: the GPU ids Ray gave it, as CUDA_VISIBLE_DEVICES names them, "" for none) and
    the weights it loaded (`identity`: None with `error` when the model did not load)."""

    name: str
    node: str
    pid: int
    device: str
    identity: ModelIdentity | None = None
    error: str | None = None
    gpus: str = ""

    def label(self, with_node: bool) -> str:
        """The device as the results record it: "cpu", "cuda:0 (GPU 2 on node 10.0.0.3)"."""
        notes = ([f"GPU {self.gpus}"] if self.gpus else []) + ([f"node {self.node}"] if with_node else [])
        return self.device + (f" ({' on '.join(notes)})" if notes else "")


def actor_stamp(name: str, infos: list[ActorInfo]) -> tuple[str, str]:
    """(worker, device) for a fact traced by actor `name`: ("ray actor-1", "cpu"); the node
    is named when the actors run on several."""
    several = len({info.node for info in infos}) > 1
    for info in infos:
        if info.name == name:
            return f"ray {name}", info.label(several)
    return f"ray {name}", ""


def rebuild_error(error: tuple[str, str]) -> errors.FactLocatorError:
    """The actor's error as the driver raises it: the same class (one of `errors`), the same message."""
    name, message = error
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.FactLocatorError)) or cls is errors.ExpectationFailed:
        cls = errors.TraceError
    if cls is errors.FactSetError:
        return errors.FactSetError(message)
    return cls(message)
