"""Stand-ins: modules put in a model's place during a restoration forward so that it computes
only what can differ from the corrupted run, with the same numbers.

- `replay_layer`: a decoder layer below every restored layer of the batch: hands back the
  corrupted run's output.
- `staggered_layer`: a decoder layer that only some rows of the batch have reached: runs
  those, hands back the corrupted run's output for the rest.
- `partial_module`: an MLP whose output matters at only some (row, position) pairs.
- `prefilled_layer`: a KV-cache layer over the corrupted run's keys and values, with room
  for the positions the forward runs.

The classes are made on first use (`lru_cache`), so importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["partial_module", "prefilled_layer", "replay_layer", "staggered_layer"]


def replay_layer(output: Any) -> torch.nn.Module:
    """A stand-in for a decoder layer that need not run: it returns `output` (the corrupted
    run's output for the batch's rows and positions) whatever its inputs."""
    return _replay_class()(output)


@lru_cache(maxsize=1)
def _replay_class() -> type:
    import torch

    class ReplayLayer(torch.nn.Module):
        def __init__(self, output: Any) -> None:
            super().__init__()
            self.output = output

        def forward(self, *_args: Any, **_kwargs: Any) -> Any:
            return self.output

    return ReplayLayer


def staggered_layer(layer: Any, batch: int, active: int, idle: Callable[[torch.Tensor], Any], cache: Any, index: int,
                    copies: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.nn.Module:
    """A stand-in for decoder layer `index` when only the first `active` of the batch's
    `batch` rows must run it (their sites' first restored layer is at or below `index`; sites
    are sorted by it). The other rows get the corrupted run's outputs of this layer, which
    `idle(out)` writes into `out`, so a batch of sites with different first layers wastes no
    work; then `copies` (target rows, source rows), if given, sets idle rows to the output
    of active ones (rows that continue from another's state). The layer's submodules stay
    reachable under their usual names, so hooks on them still fire."""
    return _staggered_class()(layer, batch, active, idle, cache, index, copies)


@lru_cache(maxsize=1)
def _staggered_class() -> type:
    import torch

    from fact_locator.tracing.batch_rows import on_device
    from fact_locator.tracing.hooks import main_tensor, replace_main_tensor

    class StaggeredLayer(torch.nn.Module):
        def __init__(self, layer: Any, batch: int, active: int, idle: Callable[[torch.Tensor], Any], cache: Any, index: int,
                     copies: tuple[torch.Tensor, torch.Tensor] | None) -> None:
            super().__init__()
            for name, child in layer.named_children():
                self.add_module(name, child)  # same objects: hooks on `<layer>.mlp` fire
            object.__setattr__(self, "_layer", layer)  # not a child: no duplicate names
            self.batch, self.active, self.idle = batch, active, idle
            self.cache, self.index, self.copies = cache, index, copies

        def _rows(self, value: Any) -> Any:
            # Batch-first tensors (hidden states, a per-row mask or rotary table) lose the
            # inactive rows; 1-d tensors (cache positions) are never per row.
            if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == self.batch:
                return value[: self.active]
            if isinstance(value, tuple):
                return tuple(self._rows(v) for v in value)
            return value

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            if self.cache is not None:
                cached = self.cache.layers[self.index]
                cached.keys, cached.values = cached.keys[: self.active], cached.values[: self.active]
            output = self._layer(*(self._rows(a) for a in args), **{k: self._rows(v) for k, v in kwargs.items()})
            main = main_tensor(output)
            # The idle rows are gathered here, not up front (only one layer's copy is alive
            # at a time), straight into the output: no second copy through torch.cat.
            full = main.new_empty((self.batch, *main.shape[1:]))
            full[: self.active].copy_(main)
            self.idle(full[self.active :])
            if self.copies is not None:
                targets, sources = (on_device(t, full.device) for t in self.copies)
                full.index_copy_(0, targets, full.index_select(0, sources))
            return replace_main_tensor(output, full)

    return StaggeredLayer


def partial_module(module: Any, rows: int, positions: int, width: int, compute: torch.Tensor,
                   fill: Callable[[torch.Tensor], Any] | None = None) -> torch.nn.Module:
    """A stand-in for a position-wise module (an MLP) of a restoration forward whose output is
    needed at only some (row, position) pairs. It runs `module` on the pairs `compute` (flat
    indices row * positions + position into its input of `rows` x `positions` vectors),
    lets `fill(out)` write others (those whose input is the corrupted run's: their output
    is too) into the flat output `out` (rows * positions, `width`), and leaves the rest at
    zero: they are overwritten by a restoration, or never read (the last layer's, but for
    the last position). A call of any other shape, or an output of another kind or width,
    runs `module` as it is."""
    return _partial_class()(module, rows, positions, width, compute, fill)


@lru_cache(maxsize=1)
def _partial_class() -> type:
    import torch

    from fact_locator.tracing.batch_rows import on_device

    class PartialModule(torch.nn.Module):
        def __init__(self, module: Any, rows: int, positions: int, width: int, compute: torch.Tensor,
                     fill: Callable[[torch.Tensor], Any] | None) -> None:
            super().__init__()
            self.module = module
            self.rows, self.positions, self.width = rows, positions, width
            self.compute, self.fill = compute, fill

        def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
            expected = isinstance(x, torch.Tensor) and not args and not kwargs and x.dim() in (2, 3)
            if not expected or x.numel() != self.rows * self.positions * x.shape[-1]:
                return self.module(x, *args, **kwargs)
            flat = x.reshape(-1, x.shape[-1])
            out = flat.new_zeros((flat.shape[0], self.width))
            if self.compute.numel():
                compute = on_device(self.compute, flat.device)  # the MLP's device under a device map
                picked = flat.index_select(0, compute)
                # The module gets the layout it was called with: (pairs, d) or (1, pairs, d).
                result = self.module(picked if x.dim() == 2 else picked.unsqueeze(0))
                if not isinstance(result, torch.Tensor) or result.shape[-1] != self.width:
                    return self.module(x)  # not a plain position-wise module after all
                out.index_copy_(0, compute, result.reshape(-1, self.width).to(out.device, out.dtype))
            if self.fill is not None:
                self.fill(out)
            return out.view(*x.shape[:-1], self.width)

    return PartialModule


def prefilled_layer(keys: torch.Tensor, values: torch.Tensor, length: int, writable: bool) -> Any:
    """A cache layer over buffers (batch, heads, positions, head_dim) whose first `length`
    positions are filled. A writable one stores the keys/values of the positions a forward
    runs into the rest of its buffers, where transformers' DynamicLayer would copy the whole
    cache with torch.cat at every layer of every forward. A read-only one (views of the
    corrupted run) copies instead."""
    return _prefilled_class()(keys, values, length, writable)


@lru_cache(maxsize=1)
def _prefilled_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class PrefilledLayer(DynamicLayer):
        def __init__(self, keys: Any, values: Any, length: int, writable: bool) -> None:
            super().__init__()
            self.lazy_initialization(keys, values)  # whatever fields this transformers sets
            self._room = (keys, values) if writable else None
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            start, end = self.keys.shape[-2], self.keys.shape[-2] + key_states.shape[-2]
            if self._room is None or end > self._room[0].shape[-2]:
                return super().update(key_states, value_states, *args, **kwargs)
            # A staggered layer may have cut the cache to its leading rows: keep that cut.
            rows = key_states.shape[0]
            keys, values = self._room[0][:rows], self._room[1][:rows]
            keys[:, :, start:end] = key_states
            values[:, :, start:end] = value_states
            self.keys, self.values = keys[:, :, :end], values[:, :, :end]
            return self.keys, self.values

    return PrefilledLayer
