"""The model as every run of a trace calls it: the loaded model, the trace settings, and the
one forward they all make (logits at the last position, in float32, under the kernel swaps)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from fact_locator.models.loading import LoadedModel, torch_dtype
from fact_locator.tracing.kernels import attention_backends, fused_tanh_gelu, tanh_gelu_sites
from fact_locator.tracing.settings import TraceSettings

if TYPE_CHECKING:
    import torch

__all__ = ["Engine"]


class Engine:
    """What the clean, corrupted and restoration runs of one tracer share."""

    def __init__(self, loaded: LoadedModel, settings: TraceSettings) -> None:
        self.loaded = loaded
        self.settings = settings
        self.dtype = torch_dtype(settings.dtype)
        parameters = inspect.signature(loaded.model.forward).parameters
        # Logits of the last position only, where the model can say so: the others are never read.
        self.logits_kwargs: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        # transformers renames past_key_values to `cache` model by model (GPT-J already).
        self.cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        self.gelu_sites = tanh_gelu_sites(loaded)

    def forward(self, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        """Logits at the last position for each row, in float32 (softmax and effects are
        computed in float32 whatever the model's dtype)."""
        kwargs: dict[str, Any] = {"use_cache": False}
        if cache is not None:
            kwargs = {"use_cache": True, self.cache_kwarg: cache}
        with attention_backends(self.loaded.device), fused_tanh_gelu(self.gelu_sites):
            out = self.loaded.model(input_ids=input_ids, **kwargs, **self.logits_kwargs)
        return out.logits[:, -1, :].float()
