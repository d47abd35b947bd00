"""ROME's test of whether a model knows a fact: its greedy continuation of the prompt, as
many tokens as the target has, token by token (each the argmax after the prompt and the
tokens chosen before it). The clean run gives the first; each further token is one forward
of the prompt with the continuation so far."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fact_locator.tracing.engine import Engine

__all__ = ["greedy_continuation"]


def greedy_continuation(engine: Engine, prompt_ids: Sequence[int], first_id: int, n_tokens: int) -> tuple[int, ...]:
    """The `n_tokens` greedy tokens after `prompt_ids`, the first being `first_id` (the clean
    run's top-1). Stops early at no token: a wrong token already decides the rule, but the
    whole continuation makes the clearer message."""
    import torch

    ids = [*prompt_ids, first_id]
    chosen = [first_id]
    with torch.inference_mode():
        while len(chosen) < n_tokens:
            logits = engine.forward(torch.tensor([ids], device=engine.loaded.device))
            next_id = int(logits[0].argmax().item())
            chosen.append(next_id)
            ids.append(next_id)
    return tuple(chosen)
