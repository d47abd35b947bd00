"""What a run measures at the last position: P(o) (ROME's default), log P(o), or the logit
difference between the target and a distractor (Zhang and Nanda 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fact_locator.errors import FactError
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

__all__ = ["check_metric", "metric_values"]


def check_metric(metric: str, prepared: PreparedPrompt) -> None:
    """Fail before any run when the metric needs what the fact does not give."""
    if metric == "logit_diff" and prepared.distractor_id is None:
        raise FactError(f"fact {prepared.fact.label!r}: the logit_diff metric needs a distractor (a wrong answer) in the fact")
    if metric == "logit_diff" and prepared.distractor_id == prepared.target_id:
        raise FactError(f"fact {prepared.fact.label!r}: the distractor starts with the same token as the target")


def metric_values(metric: str, logits: torch.Tensor, prepared: PreparedPrompt) -> torch.Tensor:
    """One value per row from float32 last-position logits (rows, vocab)."""
    import torch

    if metric == "prob":
        return torch.softmax(logits, dim=-1)[:, prepared.target_id]
    if metric == "logprob":
        return torch.log_softmax(logits, dim=-1)[:, prepared.target_id]
    if metric == "logit_diff":
        assert prepared.distractor_id is not None
        return logits[:, prepared.target_id] - logits[:, prepared.distractor_id]
    raise ValueError(f"unknown metric {metric!r}")
