"""The read-out of restoration forwards: the output embedding's logits and the metric's value
per row, written into buffers that are kept from batch to batch of a trace.

A batch's float32 logits (rows x vocab) and their softmax are the biggest tensors a
restoration forward makes. Allocated afresh for every batch, on a CPU they come from the OS
each time, and the kernel zero-fills every page on first touch (page faults and system time
on every batch: benchmarks/README.md). Reused, the pages stay mapped (on a GPU torch's
caching allocator already reuses memory; the buffers cost nothing there either). With
`EngineOptions.buffered_readout` off, every batch gets new ones.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.metrics import row_metric_values

if TYPE_CHECKING:
    import torch

__all__ = ["Readout", "finite_rows"]


class Readout:
    """Reusable buffers for the logits and the softmax of restoration batches. They grow to
    the largest batch seen and are dropped by `clear` (at the end of a trace, and before a
    batch is retried after running out of memory)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def buffer(self, name: str, rows: int, width: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
        """A contiguous (rows, width) tensor, the leading rows of the buffer `name`; its
        contents are whatever the last user left."""
        import torch

        held = self._buffers.get(name)
        if held is None or held.shape[0] < rows or held.shape[1] != width or held.dtype != dtype or held.device != torch.device(device):
            del held
            self._buffers.pop(name, None)  # free the old one before making the bigger one
            held = self._buffers[name] = torch.empty((rows, width), dtype=dtype, device=device)
        return held[:rows]

    def clear(self) -> None:
        self._buffers.clear()

    def head(self, module: Any) -> torch.nn.Module | None:
        """A stand-in for the output embedding `module` that writes the logits into this
        readout's buffer; None when `module` is not a plain `nn.Linear`."""
        import torch

        if type(module) is not torch.nn.Linear:
            return None
        return _buffered_head_class()(module, self)

    def values(self, metric: str, logits: torch.Tensor, target_ids: torch.Tensor, distractor_ids: torch.Tensor | None) -> torch.Tensor:
        """The metric's value of each row (`metrics.row_metric_values`), its softmax written
        into a reused buffer. The logits must be float32: (rows, vocab), or (rows, target
        tokens, vocab) with `target_ids` (rows, target tokens) for the whole target."""
        scratch = None
        if metric in ("prob", "logprob"):
            # Teacher-forced rows (rows, target tokens, vocab) normalize each read position.
            flat = logits.reshape(-1, logits.shape[-1])
            scratch = self.buffer("softmax", flat.shape[0], flat.shape[1], logits.dtype, logits.device)
        return row_metric_values(metric, logits, target_ids, distractor_ids, scratch)


def finite_rows(logits: torch.Tensor) -> torch.Tensor:
    """Whether each row of logits is all finite, as a (rows,) bool tensor, from one pass and
    no full-size temporary: a row's sum is NaN or infinite when some logit in it is. A row
    whose finite logits sum beyond float32's range (logits near 1e34 on a 50k vocabulary)
    counts as not finite too: no working model gives such logits, and summing in float64
    instead, to tell them apart, took 20x longer on a CPU."""
    import torch

    finite = torch.isfinite(logits.sum(dim=-1, dtype=torch.float32))
    return finite if finite.dim() == 1 else finite.all(dim=-1)  # teacher-forced: every read position


@lru_cache(maxsize=1)
def _buffered_head_class() -> type:
    import torch

    class BufferedHead(torch.nn.Module):
        """`linear(x)` written into the readout's "logits" buffer."""

        def __init__(self, linear: torch.nn.Linear, readout: Readout) -> None:
            super().__init__()
            self.linear = linear
            self.readout = readout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight, bias = self.linear.weight, self.linear.bias
            # out= takes no part in autograd: with gradients on, the layer runs as it is.
            if x.dtype != weight.dtype or x.device != weight.device or (torch.is_grad_enabled() and weight.requires_grad):
                return self.linear(x)
            flat = x.reshape(-1, x.shape[-1])
            out = self.readout.buffer("logits", flat.shape[0], weight.shape[0], weight.dtype, weight.device)
            if bias is None:
                torch.mm(flat, weight.t(), out=out)
            else:
                torch.addmm(bias, flat, weight.t(), out=out)
            return out.view(*x.shape[:-1], weight.shape[0])

    return BufferedHead
