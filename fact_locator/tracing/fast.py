"""Building blocks of the fast exact tracer.

A restoration run at token `t` only differs from the corrupted run at positions >= t, and
(for a site whose first restored layer is `f`) only from layer `f` on. So a batch of sites
that share `t` runs just the suffix positions t..T-1, reads the corrupted run's keys and
values for positions < t from a KV cache, and replaces the decoder layers before the
batch's first restored layer by replay layers that hand back the corrupted run's output.
Everything here is architecture-generic; whether a model supports it is decided once, by
`Tracer` running a probe (see `tracer._suffix_probe`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "CPU_BUDGET_BYTES",
    "BatchRows",
    "attention_backends",
    "auto_batch_rows",
    "cache_tensors",
    "cpu_grouped_query_attention",
    "cpu_rows_cap",
    "device_tensor",
    "fused_tanh_gelu",
    "is_out_of_memory",
    "model_width",
    "partial_module",
    "prefilled_layer",
    "replaced_layers",
    "replaced_submodules",
    "replay_layer",
    "run_in_batches",
    "staggered_layer",
    "suffix_cache",
    "tanh_gelu_sites",
]

T = TypeVar("T")
R = TypeVar("R")

CPU_BUDGET_BYTES = 1 << 30  # 1 GiB of activations per forward on a CPU
CUDA_BUDGET_FRACTION = 0.5  # of the free GPU memory (`_budget`)
# On a CPU, bigger forwards stop paying off at about this many (row, position) pairs
# (measured on 2 cores: 256 -> 1024 took a SmolLM2 trace from ~52 s to ~44 s, 2048 no better).
CPU_TOKEN_ROWS = 1024


def device_tensor(data: Any, device: Any) -> torch.Tensor:
    """A tensor made on the host (from a list or a CPU tensor), sent to `device` without
    waiting for the GPU: `torch.tensor(..., device="cuda")` synchronises the stream, which
    would hold the host's set-up of the next batch until the GPU has finished this one."""
    import torch

    tensor = data if isinstance(data, torch.Tensor) else torch.tensor(data)
    return tensor.to(device, non_blocking=True)


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
        index = self.source[start_site * self.samples :] if batch_rows is None else self.source.index_select(0, batch_rows)
        if out is None:
            return stacked.index_select(0, index)
        return torch.index_select(stacked.to(out.dtype), 0, index, out=out)


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
                targets, sources = self.copies
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
                picked = flat.index_select(0, self.compute)
                # The module gets the layout it was called with: (pairs, d) or (1, pairs, d).
                result = self.module(picked if x.dim() == 2 else picked.unsqueeze(0))
                if not isinstance(result, torch.Tensor) or result.shape[-1] != self.width:
                    return self.module(x)  # not a plain position-wise module after all
                out.index_copy_(0, self.compute, result.reshape(-1, self.width).to(out.dtype))
            if self.fill is not None:
                self.fill(out)
            return out.view(*x.shape[:-1], self.width)

    return PartialModule


@contextmanager
def attention_backends(device: str) -> Iterator[None]:
    """On CUDA: scaled-dot-product attention without cuDNN's kernels (flash, memory-efficient
    and math remain). Restoration batches come in many shapes (each staggered layer runs a
    different number of rows), and torch (2.11 at least) sends masked attention to cuDNN
    first, which builds an execution plan for every new shape (modelscope/FunASR#3704).
    Measured on an H100: one GPT-2 XL-shape trace took 48.3 s with cuDNN, 3.3 s without.
    On a CPU: grouped-query attention without copies (`cpu_grouped_query_attention`)."""
    if not device.startswith("cuda"):
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
    torch's own `enable_gqa` (2.5 on) reads the shared heads in place: on a CPU, the same
    numbers (equal to the last bit at SmolLM2's restoration shapes) 1.3-2.8x faster there.
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
    with _swapped([(sdpa_attention, "use_gqa_in_sdpa", _grouped_query_attention_always)]):
        yield


def _grouped_query_attention_always(*_args: Any, **_kwargs: Any) -> bool:
    return True


def tanh_gelu_sites(model: Any) -> tuple[tuple[Any, str], ...]:
    """Where `model` runs transformers' "gelu_new" (GPT-2, GPT-J, Phi, GPT-Neo, CodeGen):
    (parent module, attribute name) of each `NewGELUActivation`."""
    try:
        from transformers.activations import NewGELUActivation
    except ImportError:
        return ()
    return tuple((parent, name) for parent in model.modules() for name, child in parent.named_children()
                 if type(child) is NewGELUActivation)


@contextmanager
def fused_tanh_gelu(sites: Sequence[tuple[Any, str]]) -> Iterator[None]:
    """Run the "gelu_new" modules at `sites` as torch's GELU(approximate="tanh") for the
    duration; the originals always come back. Both compute 0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3))), but "gelu_new" spells it out as 8 element-wise kernels over the MLP's
    widest activations, torch's GELU as one (float32: within 5e-7 of each other; bfloat16:
    the one kernel rounds once, so it is the closer to the exact function). On an H100 a
    GPT-2 XL-shape model configured with the one-kernel form traced 1.07-1.23x faster
    (benchmarks/README.md)."""
    if not sites:
        yield
        return
    import torch

    fused = torch.nn.GELU(approximate="tanh")
    with _swapped([(parent, name, fused) for parent, name in sites]):
        yield


@contextmanager
def replaced_layers(layers: Any, replacements: Mapping[int, Any]) -> Iterator[None]:
    """Swap entries of a ModuleList for the duration; the originals always come back."""
    # A ModuleList keeps entry i as its attribute "i" (what `layers[i] = module` sets).
    with _swapped([(layers, str(i), module) for i, module in replacements.items()]):
        yield


@contextmanager
def replaced_submodules(root: Any, replacements: Mapping[str, Any]) -> Iterator[None]:
    """Swap submodules of `root`, given by dotted path, for the duration; the originals
    always come back."""
    assignments = []
    for path, module in replacements.items():
        parent, _, name = path.rpartition(".")
        assignments.append((root.get_submodule(parent) if parent else root, name, module))
    with _swapped(assignments):
        yield


@contextmanager
def _swapped(assignments: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set each (owner, attribute, value) for the duration; the originals always come back."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _value in assignments]
    try:
        for owner, name, value in assignments:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


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


def prefilled_layer(keys: torch.Tensor, values: torch.Tensor, length: int, writable: bool) -> Any:
    """A cache layer over buffers (batch, heads, positions, head_dim) whose first `length`
    positions are filled. A writable one stores the keys/values of the positions a forward
    runs into the rest of its buffers, where transformers' DynamicLayer would copy the whole
    cache with torch.cat at every layer of every forward (GPT-2 XL-shape traces on an H100:
    1.13x faster). A read-only one (views of the corrupted run) copies instead."""
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


def cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, (batch, heads, positions, head_dim), of a filled cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


# -- batch sizing and out-of-memory handling --------------------------------------------------


def auto_batch_rows(config: Any, n_tokens: int, suffix: int, device: str, element_bytes: int) -> int:
    """How many rows one forward may take: a memory budget divided by an estimate of the
    bytes one row needs (KV cache of every layer, the widest activations of one layer,
    attention scores and the float32 logits of one position)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    d = model_width(config) or 768
    inter = _first_int(text, ("intermediate_size", "n_inner", "ffn_dim"), 4 * d) or 4 * d
    layers = _first_int(text, ("num_hidden_layers", "n_layer"), 12)
    heads = _first_int(text, ("num_attention_heads", "n_head"), 12)
    vocab = _first_int(text, ("vocab_size",), 50000)
    per_row = element_bytes * (2 * layers * d * n_tokens + suffix * (6 * d + 3 * inter + heads * n_tokens)) + 8 * vocab
    return max(1, _budget(device) // per_row)


def cpu_rows_cap(suffix: int) -> int:
    return max(1, CPU_TOKEN_ROWS // max(1, suffix))


def model_width(config: Any) -> int:
    """The width of the residual stream (what every layer and MLP outputs)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return _first_int(text, ("hidden_size", "n_embd", "d_model"), 0)


def _budget(device: str) -> int:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        # Memory torch's allocator holds but no tensor uses is free to us too: without it
        # the batch size would shrink after the first trace, and vary from run to run.
        held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + held) * CUDA_BUDGET_FRACTION)
    return CPU_BUDGET_BYTES


def _first_int(config: Any, names: Sequence[str], default: int) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


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
