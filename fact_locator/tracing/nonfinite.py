"""NaN and inf in a run's logits fail the trace, with the first decoder layer whose output
has them. Restoration runs leave their check on the device until the trace reads them all
(`FiniteCheck`), so that the host need not wait for the GPU after each batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.errors import TraceError
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.engine import Engine

__all__ = ["FiniteCheck", "all_finite", "check_finite", "first_nonfinite_layer", "raise_unless_finite"]


@dataclass(frozen=True)
class FiniteCheck:
    """A restoration run's NaN/inf check, left on the device until the trace reads it."""

    flag: torch.Tensor  # a 0-d bool: every logit finite
    where: str
    prepared: PreparedPrompt


def all_finite(logits: torch.Tensor) -> torch.Tensor:
    """Whether every logit is finite, as a 0-d tensor: the smallest and largest are NaN or
    infinite exactly when some logit is, and no full-size boolean tensor is made."""
    import torch

    low, high = torch.aminmax(logits)
    return torch.isfinite(low) & torch.isfinite(high)


def check_finite(engine: Engine, logits: torch.Tensor, where: str, prepared: PreparedPrompt) -> None:
    """NaN or inf fails the trace, naming the first layer whose output has it."""
    if not bool(all_finite(logits)):
        raise _not_finite(engine, where, prepared)


def raise_unless_finite(engine: Engine, checks: Sequence[FiniteCheck]) -> None:
    """The deferred checks of restoration runs, read back from the device at once."""
    import torch

    if checks:
        for check, ok in zip(checks, torch.stack([c.flag for c in checks]).tolist()):
            if not ok:
                raise _not_finite(engine, check.where, check.prepared)


def _not_finite(engine: Engine, where: str, prepared: PreparedPrompt) -> TraceError:
    layer = first_nonfinite_layer(engine, prepared)
    at = f"; it first appears in the output of layer {layer} ({engine.loaded.adapter.layer_path(layer)})" if layer is not None else ""
    return TraceError(
        f"non-finite logits (NaN or inf) in {where} of {prepared.fact.label!r} with dtype {engine.settings.dtype}{at}; "
        "try --dtype float32, or check the weights"
    )


def first_nonfinite_layer(engine: Engine, prepared: PreparedPrompt) -> int | None:
    """Re-run the clean prompt, checking each decoder layer's output."""
    import torch

    found: list[int] = []

    def check(layer: int) -> Callable[[torch.Tensor], None]:
        def edit(t: torch.Tensor) -> None:
            if not found and not bool(torch.isfinite(t).all()):
                found.append(layer)

        return edit

    loaded = engine.loaded
    edits = {loaded.adapter.layer_path(layer): check(layer) for layer in range(loaded.n_layers)}
    input_ids = torch.tensor([prepared.token_ids], device=loaded.device)
    with torch.inference_mode(), edit_outputs(loaded.model, edits):
        engine.forward(input_ids)
    return found[0] if found else None
