"""The model as every run of a trace calls it: the loaded model, the trace settings, the
engine options, and the one forward they all make (logits at the last position, in float32,
under the kernel swaps)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.models.loading import LoadedModel, torch_dtype
from fact_locator.tracing.kernels import attention_backends, fused_tanh_gelu, tanh_gelu_sites
from fact_locator.tracing.settings import TraceSettings

if TYPE_CHECKING:
    import torch

__all__ = ["Engine", "EngineOptions"]


@dataclass(frozen=True)
class EngineOptions:
    """How the tracer computes, never what: each switch turns off one way the tracer saves
    work or time, and the numbers stay those of the reference loop (`tracing/reference.py`)
    to float rounding. All on by default; benchmarks switch one off to time it, tests to
    check that it changes nothing. A tracer reads them at every forward (`Tracer.options`
    may be replaced between calls), but `kv_suffix` only when its first trace chooses the path.
    """

    # Restoration runs compute only the positions from the restored token on, on top of the
    # corrupted run's KV cache, from the first layer that differs (where the model passes
    # the probe); off: every restoration run is a forward of the whole prompt.
    kv_suffix: bool = True
    # Windows clipped at layer 0 start at their end, from the longest such window's state.
    forks: bool = True
    # MLPs compute only the (row, position) pairs whose output can matter.
    partial_mlps: bool = True
    # The logits and softmax of restoration batches go into buffers kept from batch to batch.
    buffered_readout: bool = True
    # The KV cache writes a forward's keys and values into room after the prefix; off: it
    # copies the whole cache with torch.cat at every layer, as transformers' DynamicLayer does.
    prefilled_cache: bool = True
    # On a CPU, grouped-query attention reads shared key/value heads in place.
    cpu_gqa: bool = True
    # transformers' "gelu_new" runs as torch's one-kernel GELU(approximate="tanh").
    fused_gelu: bool = True


class Engine:
    """What the clean, corrupted and restoration runs of one tracer share."""

    def __init__(self, loaded: LoadedModel, settings: TraceSettings, options: EngineOptions | None = None) -> None:
        self.loaded = loaded
        self.settings = settings
        self.options = options or EngineOptions()
        self.dtype = torch_dtype(settings.dtype)
        parameters = inspect.signature(loaded.model.forward).parameters
        # Logits of the last position only, where the model can say so: the others are never read.
        self.logits_kwargs: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        # transformers renames past_key_values to `cache` model by model (GPT-J already).
        self.cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        self.gelu_sites = tanh_gelu_sites(loaded)

    def forward(self, input_ids: torch.Tensor, cache: Any = None, positions: int = 1) -> torch.Tensor:
        """Logits at the last position for each row, (rows, vocab), in float32 (softmax and
        effects are computed in float32 whatever the model's dtype); with `positions` > 1,
        those of the last `positions` positions, (rows, positions, vocab) (the whole-target
        metric reads one position per target token)."""
        kwargs: dict[str, Any] = {"use_cache": False}
        if cache is not None:
            kwargs = {"use_cache": True, self.cache_kwarg: cache}
        keep = self.logits_kwargs if positions == 1 or not self.logits_kwargs else {"logits_to_keep": positions}
        options = self.options
        with attention_backends(self.loaded.device, cpu_gqa=options.cpu_gqa), \
                fused_tanh_gelu(self.gelu_sites if options.fused_gelu else ()):
            out = self.loaded.model(input_ids=input_ids, **kwargs, **keep)
        if positions == 1:
            return out.logits[:, -1, :].float()
        return out.logits[:, -positions:, :].float()
