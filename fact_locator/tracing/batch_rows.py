"""Rows of a restoration batch: which fact's data each row reads, gathered in one go, and
host-made index tensors sent to the device without waiting for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["BatchRows", "device_tensor", "on_device"]


def device_tensor(data: Any, device: Any) -> torch.Tensor:
    """A tensor made on the host (from a list or a CPU tensor), sent to `device` without
    waiting for the GPU: `torch.tensor(..., device="cuda")` synchronises the stream, which
    would hold the host's set-up of the next batch until the GPU has finished this one."""
    import torch

    tensor = data if isinstance(data, torch.Tensor) else torch.tensor(data)
    return tensor.to(device, non_blocking=True)


def on_device(tensor: torch.Tensor, device: Any) -> torch.Tensor:
    """`tensor` where another tensor it meets lives: under a device map (`load_model(...,
    device_map=...)`) consecutive layers sit on different devices, and an index made for the
    model's first device must follow the layer's tensors. A no-op on one device."""
    return tensor if tensor.device == device else tensor.to(device, non_blocking=True)


class BatchRows:
    """Where each row of a batch of sites gets its fact's data. Batch row `site * samples +
    sample` reads row `local fact * samples + sample` of the facts' per-fact tensors
    (each (samples, ...)) stacked in `facts` order. One gather per tensor instead of one
    slice per site keeps the host's work independent of the batch size (what a GPU needs)."""

    def __init__(self, site_facts: Sequence[int], samples: int, device: Any) -> None:
        import torch

        self.facts: list[int] = list(dict.fromkeys(site_facts))
        self.local: dict[int, int] = {fact: i for i, fact in enumerate(self.facts)}
        self.samples = samples
        self.device = device
        site_local = torch.tensor([self.local[f] for f in site_facts])
        source = (site_local[:, None] * samples + torch.arange(samples)[None, :]).reshape(-1)
        self._row_fact = site_local.repeat_interleave(samples)  # local fact of each batch row, on the host
        self.source = device_tensor(source, device)
        self.row_fact = device_tensor(self._row_fact, device)

    def fact_rows(self, local: int) -> torch.Tensor | None:
        """The batch rows of the `local`-th fact; None when the batch holds that fact alone."""
        if len(self.facts) == 1:
            return None
        return device_tensor((self._row_fact == local).nonzero().squeeze(1), self.device)

    def gather(self, per_fact: Sequence[torch.Tensor], start_site: int = 0, out: torch.Tensor | None = None,
               batch_rows: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's rows from `start_site` on (or the batch rows `batch_rows`, a device
        tensor), of per-fact tensors given in `facts` order, written into `out` when given
        (a contiguous tensor of those rows' shape). Always a new tensor (or `out`):
        restorations edit layer outputs in place, and a replayed output must not write
        through to the corrupted run that later batches read."""
        import torch

        stacked = per_fact[0] if len(per_fact) == 1 else torch.cat(list(per_fact))
        index = self.source[start_site * self.samples :] if batch_rows is None else self.source.index_select(0, on_device(batch_rows, self.source.device))
        # Under a device map a layer's tensors live on that layer's device, not the model's.
        index = on_device(index, stacked.device)
        if out is None:
            return stacked.index_select(0, index)
        return torch.index_select(stacked.to(out.dtype), 0, index, out=out)
