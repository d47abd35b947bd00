"""Trace settings: ROME's defaults, each one a validated setting."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fact_locator.errors import UsageError
from fact_locator.settings import CORRUPTIONS, DTYPES, KINDS, METRICS, NOISE_CALIBRATIONS, TARGET_METRICS

__all__ = ["CORRUPTIONS", "DTYPES", "KINDS", "METRICS", "TARGET_METRICS", "TraceSettings", "parse_kinds"]

@dataclass(frozen=True)
class TraceSettings:
    """What a trace computes. `noise=None` calibrates it: `noise_scale` x the std of subject
    embeddings, those of the model's reference subjects (`noise_calibration` model, ROME's), of
    the fact set's subjects (factset; a lone fact: its own) or of the fact's own (fact)."""

    kinds: tuple[str, ...] = KINDS
    samples: int = 10
    noise: float | None = None
    noise_scale: float = 3.0
    noise_calibration: str = "model"
    window: int = 10
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    corruption: str = "gaussian"
    metric: str = "prob"
    # first: the metric reads the target's first token (ROME); full: the whole target,
    # teacher-forced (the prompt with the target's tokens but the last appended).
    target_metric: str = "first"
    # Sites per batched forward; None sizes batches from a memory budget.
    batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", parse_kinds(self.kinds))
        _check_int("samples", self.samples, minimum=1)
        _check_int("window", self.window, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, minimum=1)
        if self.noise is not None and not (isinstance(self.noise, (int, float)) and self.noise > 0):
            raise UsageError(f"noise must be a positive number (a standard deviation), got {self.noise!r}")
        if not (isinstance(self.noise_scale, (int, float)) and self.noise_scale > 0):
            raise UsageError(f"noise_scale must be a positive number, got {self.noise_scale!r}")
        if self.noise_calibration not in NOISE_CALIBRATIONS:
            raise UsageError(f"unknown noise_calibration {self.noise_calibration!r}: choose one of {', '.join(NOISE_CALIBRATIONS)}")
        if self.corruption not in CORRUPTIONS:
            raise UsageError(f"unknown corruption {self.corruption!r}: choose one of {', '.join(CORRUPTIONS)}")
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.target_metric not in TARGET_METRICS:
            raise UsageError(f"unknown target_metric {self.target_metric!r}: choose one of {', '.join(TARGET_METRICS)}")
        if self.target_metric == "full" and self.metric == "logit_diff":
            raise UsageError("target_metric full reads the whole target, logit_diff the first tokens of target and "
                             "distractor: use metric prob or logprob with it")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:") or self.device == "mps"):
            raise UsageError(f"unknown device {self.device!r}: choose cpu, cuda, cuda:N or auto")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data


def parse_kinds(kinds: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'mlp,attn' or a sequence -> validated tuple in canonical order."""
    items = [k.strip() for k in kinds.split(",")] if isinstance(kinds, str) else list(kinds)
    items = [k for k in items if k]
    unknown = [k for k in items if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown kind {unknown[0]!r}: choose from {', '.join(KINDS)}")
    if not items:
        raise UsageError(f"no kinds given: choose from {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in items)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


