"""The KV-suffix path of restoration runs.

A restoration run at token `t` only differs from the corrupted run at positions >= t, and
(for a site whose first restored layer is `f`) only from layer `f` on. So a batch of sites
that share `t` runs just the suffix positions t..T-1, reads the corrupted run's keys and
values for positions < t from a KV cache, and replaces the decoder layers before the
batch's first restored layer by replay layers that hand back the corrupted run's output.
Everything here is architecture-generic; whether a model supports it is decided once, by
the tracer running a probe (`suffix_probe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.batch_rows import BatchRows
from fact_locator.tracing.stand_ins import prefilled_layer

if TYPE_CHECKING:
    import torch

__all__ = ["cache_tensors", "suffix_cache"]


def suffix_cache(keys_values: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]], rows: BatchRows, token: int, first_real: int) -> Any:
    """A DynamicCache holding the corrupted runs' keys/values for positions < `token`: one
    entry of `keys_values` (a fact's cache of the whole prompt, per layer) per fact of
    `rows`, gathered into the batch's rows once, with room for the positions the batch
    runs (`prefilled_layer`). Layers before `first_real` never run (they are replayed), so
    they keep views of the first fact's tensors: the cache only needs them to report its
    length. None when there is no prefix."""
    from transformers import DynamicCache

    if token == 0:
        return None
    layers = []
    for i, (k, v) in enumerate(keys_values[0]):
        if i >= first_real:
            k = rows.gather([kv[i][0] for kv in keys_values])
            v = rows.gather([kv[i][1] for kv in keys_values])
        layers.append(prefilled_layer(k, v, token, writable=i >= first_real))
    cache = DynamicCache()
    cache.layers = layers
    return cache


def cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, (batch, heads, positions, head_dim), of a filled cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]
