"""How many sites one restoration forward takes (a memory budget divided by what one row
needs; on a CPU also a cap where bigger forwards stop paying off), and running a list of
sites in batches that halve after running out of memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fact_locator.models.adapters import config_size
from fact_locator.models.loading import torch_dtype

if TYPE_CHECKING:
    from fact_locator.models.loading import LoadedModel
    from fact_locator.tracing.settings import TraceSettings

__all__ = [
    "CPU_BUDGET_BYTES",
    "auto_batch_rows",
    "cpu_rows_cap",
    "facts_together",
    "is_out_of_memory",
    "run_in_batches",
    "sites_per_batch",
]

T = TypeVar("T")
R = TypeVar("R")

CPU_BUDGET_BYTES = 1 << 30  # 1 GiB of activations per forward on a CPU
CUDA_BUDGET_FRACTION = 0.5  # of the free GPU memory (`_budget`)
# On a CPU, bigger forwards stop paying off at about this many (row, position) pairs
# (benchmarks/README.md).
CPU_TOKEN_ROWS = 1024


def sites_per_batch(loaded: LoadedModel, settings: TraceSettings, n_tokens: int, positions: int) -> int:
    """Sites per forward of `positions` positions of an `n_tokens` prompt: the setting, or as
    many as a memory budget allows; on a CPU also capped where bigger forwards stop paying off."""
    if settings.batch_size is not None:
        return settings.batch_size
    element = torch_dtype(settings.dtype).itemsize
    rows = auto_batch_rows(loaded.model.config, n_tokens, positions, loaded.device, element)
    if not loaded.device.startswith("cuda"):
        rows = min(rows, cpu_rows_cap(positions))
    return max(1, rows // settings.samples)


def facts_together(loaded: LoadedModel, settings: TraceSettings, n_tokens: int) -> int:
    """How many facts of one shape share restoration forwards: enough to fill a batch of
    the last token's sites (the smallest group), at most 64. On a CPU, whose batches are
    capped small, SmolLM2's 90 sites of one token already fill one: facts go one by one."""
    sites = sites_per_batch(loaded, settings, n_tokens, 1)
    return max(1, min(64, sites // max(1, len(settings.kinds) * loaded.n_layers)))


def auto_batch_rows(config: Any, n_tokens: int, suffix: int, device: str, element_bytes: int) -> int:
    """How many rows one forward may take: a memory budget divided by an estimate of the
    bytes one row needs (KV cache of every layer, the widest activations of one layer,
    attention scores and the float32 logits of one position)."""
    # Sizes a config does not give are guessed at GPT-2 small's.
    d = config_size(config, "width") or 768
    inter = config_size(config, "mlp_width") or 4 * d
    layers = config_size(config, "layers") or 12
    heads = config_size(config, "heads") or 12
    vocab = config_size(config, "vocab") or 50000
    per_row = element_bytes * (2 * layers * d * n_tokens + suffix * (6 * d + 3 * inter + heads * n_tokens)) + 8 * vocab
    return max(1, _budget(device) // per_row)


def cpu_rows_cap(suffix: int) -> int:
    return max(1, CPU_TOKEN_ROWS // max(1, suffix))


def _budget(device: str) -> int:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        # Memory torch's allocator holds but no tensor uses is free to us too: without it
        # the batch size would shrink after the first trace, and vary from run to run.
        held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + held) * CUDA_BUDGET_FRACTION)
    return CPU_BUDGET_BYTES


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_in_batches(items: Sequence[T], size: int, run: Callable[[Sequence[T]], Sequence[R]], on_oom: Callable[[], None] | None = None) -> list[R]:
    """`run` over consecutive chunks of at most `size` items, results concatenated. A chunk
    that runs out of memory is retried at half the size (and later chunks keep the smaller
    size); one item that still does not fit re-raises."""
    results: list[R] = []
    i = 0
    while i < len(items):
        chunk = items[i : i + size]
        try:
            results.extend(run(chunk))
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc) or size == 1:
                raise
            size = max(1, size // 2)
            if on_oom is not None:
                on_oom()
            continue
        i += len(chunk)
    return results
