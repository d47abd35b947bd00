"""The clean run: one forward of a prompt as it is. Every tracing method starts from it (the
tracer, severed paths, attribution patching, the noise sweep, and the known/unknown check):
the target's probability, the top-1 token, the embeddings the corruption is calibrated on,
and the site states a restoration writes back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.metrics import metric_values, target_probabilities
from fact_locator.tracing.nonfinite import check_finite
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.engine import Engine

__all__ = ["CleanRun", "clean_run"]


@dataclass
class CleanRun:
    """What one clean forward of a prompt measured and kept."""

    prepared: PreparedPrompt
    # (1, vocab) float32, at the last position; teacher-forced (`prompt.teacher_forced`):
    # (1, target tokens, vocab), at the read positions.
    logits: torch.Tensor
    prob: float  # P(target): its first token's, or the whole target's when teacher-forced

    value: float  # the metric's value; NaN when not measured
    top_id: int
    p_top: float
    states: dict[tuple[str, int], torch.Tensor]  # (kind, layer) -> (tokens, d)
    embeddings: torch.Tensor  # (tokens, d), output of the embedding module


def clean_run(engine: Engine, prepared: PreparedPrompt, kinds: Sequence[str] = (), measure: bool = False) -> CleanRun:
    """The clean prompt through `engine`'s forward, keeping the states of every site of
    `kinds`. `measure` computes the settings' metric too (not by default: the embeddings
    or the top-1 token alone must not need, say, a distractor). NaN or inf fails it."""
    import torch

    loaded = engine.loaded
    adapter = loaded.adapter
    n_tokens = len(prepared.token_ids)
    states: dict[tuple[str, int], torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}

    def keep(key: tuple[str, int] | str) -> Callable[[torch.Tensor], None]:
        def edit(t: torch.Tensor) -> None:
            if isinstance(key, str):
                captured[key] = t[0].detach().clone()
            else:
                states[key] = adapter.as_tokens(key[0], t, n_tokens)[0].detach().clone()

        return edit

    edits: dict[str, Callable[[torch.Tensor], None]] = {adapter.embed: keep("embed")}
    for kind in kinds:
        for layer in range(loaded.n_layers):
            edits[adapter.site_path(kind, layer)] = keep((kind, layer))
    input_ids = torch.tensor([prepared.token_ids], device=loaded.device)
    with torch.inference_mode(), edit_outputs(loaded.model, edits):
        logits = engine.forward(input_ids, positions=prepared.read_positions)
    check_finite(engine, logits, "the clean run", prepared)
    # The top-1 token is the prediction after the prompt: the first read position.
    probs = torch.softmax(logits[0] if logits.dim() == 2 else logits[0, 0], dim=-1)
    top_id = int(probs.argmax().item())
    return CleanRun(
        prepared=prepared,
        logits=logits,
        prob=float(target_probabilities(logits, prepared)[0].item()),
        value=float(metric_values(engine.settings.metric, logits, prepared)[0].item()) if measure else float("nan"),
        top_id=top_id,
        p_top=float(probs[top_id].item()),
        states=states,
        embeddings=captured["embed"],
    )
