"""What a run measures at the last position: P(o) (ROME's default), log P(o), or the logit
difference between the target and a distractor (Zhang and Nanda 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fact_locator.errors import FactError
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

__all__ = ["check_metric", "metric_values", "row_metric_values"]


def check_metric(metric: str, prepared: PreparedPrompt) -> None:
    """Fail before any run when the metric needs what the fact does not give."""
    if metric == "logit_diff" and prepared.distractor_id is None:
        raise FactError(f"fact {prepared.fact.label!r}: the logit_diff metric needs a distractor (a wrong answer) in the fact")
    if metric == "logit_diff" and prepared.distractor_id == prepared.target_id:
        raise FactError(f"fact {prepared.fact.label!r}: the distractor starts with the same token as the target")


def metric_values(metric: str, logits: torch.Tensor, prepared: PreparedPrompt) -> torch.Tensor:
    """One value per row from float32 last-position logits (rows, vocab)."""
    import torch

    rows = logits.shape[0]
    distractor = None if prepared.distractor_id is None else torch.full((rows,), prepared.distractor_id, device=logits.device)
    return row_metric_values(metric, logits, torch.full((rows,), prepared.target_id, device=logits.device), distractor)


def row_metric_values(metric: str, logits: torch.Tensor, target_ids: torch.Tensor, distractor_ids: torch.Tensor | None = None,
                      scratch: torch.Tensor | None = None) -> torch.Tensor:
    """One value per row from float32 last-position logits (rows, vocab), each row with its
    own target (and distractor) token id: rows of several facts share a batch. The softmax
    is written into `scratch` (a float32 tensor of the logits' shape) when given, so that a
    caller running batch after batch need not allocate one each time."""
    import torch

    if metric in ("prob", "logprob"):
        normalize = torch.softmax if metric == "prob" else torch.log_softmax
        normalized = normalize(logits, dim=-1) if scratch is None else normalize(logits, dim=-1, out=scratch)
        return normalized.gather(1, target_ids[:, None]).squeeze(1)
    if metric == "logit_diff":
        assert distractor_ids is not None
        return logits.gather(1, target_ids[:, None]).squeeze(1) - logits.gather(1, distractor_ids[:, None]).squeeze(1)
    raise ValueError(f"unknown metric {metric!r}")
