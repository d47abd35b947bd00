"""Kernel swaps for the tracer's forwards: which attention kernels run, grouped-query
attention without copied heads on a CPU, and GELU's tanh form as one kernel. Each changes
how a forward computes, not what (to float rounding), and is undone when the forward ends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.module_swaps import swapped

if TYPE_CHECKING:
    from fact_locator.models.loading import LoadedModel

__all__ = ["attention_backends", "cpu_grouped_query_attention", "fused_tanh_gelu", "tanh_gelu_sites"]


@contextmanager
def attention_backends(device: str, cpu_gqa: bool = True) -> Iterator[None]:
    """On CUDA: scaled-dot-product attention without cuDNN's kernels (flash, memory-efficient
    and math remain). Restoration batches come in many shapes (each staggered layer runs a
    different number of rows), and torch sends masked attention to cuDNN first, which
    builds an execution plan for every new shape (modelscope/FunASR#3704): slower than any
    other kernel here. On a CPU, with `cpu_gqa`: grouped-query attention without copies
    (`cpu_grouped_query_attention`)."""
    if not device.startswith("cuda"):
        if not cpu_gqa:
            yield
            return
        with cpu_grouped_query_attention():
            yield
        return
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3 has no cuDNN attention to avoid
        yield
        return
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


@contextmanager
def cpu_grouped_query_attention() -> Iterator[None]:
    """transformers' SDPA attention, for a model with fewer key/value heads than query heads
    (SmolLM2: 3 and 9) and an attention mask (a restoration forward's suffix has one), copies
    each key and value head to every query head it serves (`repeat_kv`) before the kernel.
    torch's own `enable_gqa` (2.5 on) reads the shared heads in place: on a CPU the same
    numbers (equal to the last bit at SmolLM2's restoration shapes), without the copies.
    transformers takes that path only without a mask, because on CUDA a masked `enable_gqa`
    falls back to the slow math kernel: hence a CPU-only switch, for the tracer's forwards;
    the original always comes back."""
    import torch

    try:
        from transformers.integrations import sdpa_attention
    except ImportError:
        sdpa_attention = None
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    if sdpa_attention is None or not hasattr(sdpa_attention, "use_gqa_in_sdpa") or (major, minor) < (2, 5):
        yield
        return
    with swapped([(sdpa_attention, "use_gqa_in_sdpa", _grouped_query_attention_always)]):
        yield


def _grouped_query_attention_always(*_args: Any, **_kwargs: Any) -> bool:
    return True


def tanh_gelu_sites(loaded: LoadedModel) -> tuple[tuple[Any, str], ...]:
    """Where the model runs transformers' "gelu_new" (GPT-2, GPT-J and Phi do by default):
    (parent module, attribute name) of each layer's MLP activation (the adapter's
    `activation`) that is a `NewGELUActivation`."""
    try:
        from transformers.activations import NewGELUActivation
    except ImportError:
        return ()
    adapter = loaded.adapter
    if not adapter.activation:
        return ()
    sites = []
    for layer in range(loaded.n_layers):
        owner, _, name = f"{adapter.layer_path(layer)}.{adapter.activation}".rpartition(".")
        try:
            parent = loaded.model.get_submodule(owner)
        except AttributeError:
            continue  # another layout: nothing to swap
        if type(getattr(parent, name, None)) is NewGELUActivation:
            sites.append((parent, name))
    return tuple(sites)


@contextmanager
def fused_tanh_gelu(sites: Sequence[tuple[Any, str]]) -> Iterator[None]:
    """Run the "gelu_new" modules at `sites` as torch's GELU(approximate="tanh") for the
    duration; the originals always come back. Both compute 0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3))), but "gelu_new" spells it out as 8 element-wise kernels over the MLP's
    widest activations, torch's GELU as one (float32: within 5e-7 of each other; bfloat16:
    the one kernel rounds once, so it is the closer to the exact function)."""
    if not sites:
        yield
        return
    import torch

    fused = torch.nn.GELU(approximate="tanh")
    with swapped([(parent, name, fused) for parent, name in sites]):
        yield
