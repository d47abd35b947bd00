"""What a run measures at the last position: P(o) (ROME's default), log P(o), or the logit
difference between the target and a distractor (Zhang and Nanda 2023). Under `target_metric:
full` the logits of the last `len(target)` positions of the teacher-forced prompt are read:
log P(o) is the sum of each target token's log-probability, P(o) its exp."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fact_locator.errors import FactError, UsageError
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

__all__ = ["check_first_target", "check_metric", "metric_values", "row_metric_values", "target_probabilities"]


def check_metric(metric: str, prepared: PreparedPrompt) -> None:
    """Fail before any run when the metric needs what the fact does not give."""
    if metric == "logit_diff" and prepared.distractor_id is None:
        raise FactError(f"fact {prepared.fact.label!r}: the logit_diff metric needs a distractor (a wrong answer) in the fact")
    if metric == "logit_diff" and prepared.distractor_id == prepared.target_id:
        raise FactError(f"fact {prepared.fact.label!r}: the distractor starts with the same token as the target")


def check_first_target(target_metric: str, prepared: PreparedPrompt, what: str) -> None:
    """Fail at once where a method reads only the target's first token but the settings ask
    for the whole target, and the target has more than one token (one token: the same)."""
    if target_metric == "full" and len(prepared.target_ids) > 1:
        raise UsageError(f"fact {prepared.fact.label!r}: {what} read the target's first token only; target_metric full "
                         f"(a target of {len(prepared.target_ids)} tokens) is traced by the exact tracer alone")


def metric_values(metric: str, logits: torch.Tensor, prepared: PreparedPrompt) -> torch.Tensor:
    """One value per row from float32 last-position logits (rows, vocab), or, for a
    teacher-forced prompt, those of its read positions (rows, target tokens, vocab)."""
    import torch

    rows = logits.shape[0]
    if logits.dim() == 3:
        targets = torch.tensor(prepared.target_ids, device=logits.device)[None, :].expand(rows, -1)
        return row_metric_values(metric, logits, targets)
    distractor = None if prepared.distractor_id is None else torch.full((rows,), prepared.distractor_id, device=logits.device)
    return row_metric_values(metric, logits, torch.full((rows,), prepared.target_id, device=logits.device), distractor)


def row_metric_values(metric: str, logits: torch.Tensor, target_ids: torch.Tensor, distractor_ids: torch.Tensor | None = None,
                      scratch: torch.Tensor | None = None) -> torch.Tensor:
    """One value per row from float32 last-position logits (rows, vocab), each row with its
    own target (and distractor) token id: rows of several facts share a batch. The softmax
    is written into `scratch` (a float32 tensor of the logits' shape) when given, so that a
    caller running batch after batch need not allocate one each time."""
    import torch

    if logits.dim() == 3:
        return _whole_target(metric, logits, target_ids, scratch)
    if metric in ("prob", "logprob"):
        normalize = torch.softmax if metric == "prob" else torch.log_softmax
        normalized = normalize(logits, dim=-1) if scratch is None else normalize(logits, dim=-1, out=scratch)
        return normalized.gather(1, target_ids[:, None]).squeeze(1)
    if metric == "logit_diff":
        assert distractor_ids is not None
        return logits.gather(1, target_ids[:, None]).squeeze(1) - logits.gather(1, distractor_ids[:, None]).squeeze(1)
    raise ValueError(f"unknown metric {metric!r}")


def target_probabilities(logits: torch.Tensor, prepared: PreparedPrompt) -> torch.Tensor:
    """P(target) of each row: its first token's at the last position (rows, vocab), or the
    whole target's, teacher-forced, from the read positions (rows, target tokens, vocab)."""
    import torch

    if logits.dim() == 3:
        return metric_values("prob", logits, prepared)
    return torch.softmax(logits, dim=-1)[:, prepared.target_id]


def _whole_target(metric: str, logits: torch.Tensor, target_ids: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
    """The sum over the target's tokens of log P(token t | prompt, tokens < t), from the
    logits of the read positions (rows, tokens, vocab) and each row's target (rows, tokens);
    for metric prob its exp, the whole target's probability. `scratch`: (rows * tokens, vocab)."""
    import torch

    if metric not in ("prob", "logprob"):
        raise ValueError(f"the whole-target metric has no {metric!r}: prob or logprob")
    rows, n, vocab = logits.shape
    flat = logits.reshape(rows * n, vocab)
    logprobs = torch.log_softmax(flat, dim=-1) if scratch is None else torch.log_softmax(flat, dim=-1, out=scratch)
    total = logprobs.gather(1, target_ids.reshape(rows * n, 1)).view(rows, n).sum(dim=1)
    return total.exp() if metric == "prob" else total
