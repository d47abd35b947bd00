"""The fast tracer (KV suffix, replayed layers, batched sites) equals the plain reference
loop to 1e-5, on every tiny architecture (on SmolLM2-135M: tests/integration/test_real_model_exact.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
import torch
from tests.support.reference_check import (SUBJECT_FIRST, SUBJECT_LAST, SUBJECT_MIDDLE, TOL, assert_equal_to_reference,
                                           likeliest_target)
from tests.support.tiny_models import TINY_CONFIGS, tiny_loaded

from fact_locator.facts import Fact
from fact_locator.tracing import batching, kernels, stand_ins
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.trace import NoiseInfo
from fact_locator.tracing.engine import EngineOptions
from fact_locator.tracing.tracer import Tracer


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny(request: pytest.FixtureRequest) -> Any:
    return tiny_loaded(request.param)


@pytest.mark.parametrize("fact", [SUBJECT_FIRST, SUBJECT_MIDDLE, SUBJECT_LAST], ids=["first", "middle", "last"])
@pytest.mark.parametrize("window", [2, 7])
def test_equals_reference_every_architecture(tiny: Any, fact: Fact, window: int) -> None:
    largest = assert_equal_to_reference(tiny, fact, window=window)
    assert largest > 1e-4, "every IE is ~0: the comparison would say nothing"


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_equals_reference_any_batch_size(tiny: Any, batch_size: int) -> None:
    assert assert_equal_to_reference(tiny, SUBJECT_MIDDLE, batch_size=batch_size) > 1e-4


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_equals_reference_four_layers(arch: str) -> None:
    loaded = tiny_loaded(arch, layers=4)
    for fact in (SUBJECT_FIRST, SUBJECT_MIDDLE):
        assert assert_equal_to_reference(loaded, fact, window=2) > 1e-4


def test_kv_suffix_is_used_on_every_tiny_architecture(tiny: Any) -> None:
    tracer = Tracer(tiny, TraceSettings(samples=2, kinds=("hidden",)))
    tracer.trace(SUBJECT_FIRST)
    assert tracer.uses_kv_suffix, tracer.suffix_fallback_reason


def test_fallback_path_equals_reference() -> None:
    """Without the KV-suffix path (a model that fails the probe, or the option off) every
    restoration run is a whole prompt, with the same numbers."""
    loaded = tiny_loaded("llama", layers=4)
    tracer = Tracer(loaded, TraceSettings(samples=3, window=2), EngineOptions(kv_suffix=False))
    trace = tracer.trace(SUBJECT_MIDDLE)
    assert tracer.uses_kv_suffix is False
    ref = reference_trace(loaded, SUBJECT_MIDDLE, KINDS, 3, trace.noise.std, 2, 0)
    for kind in KINDS:
        assert (torch.tensor(trace.ie[kind]) - torch.tensor(ref["ie"][kind])).abs().max().item() <= TOL


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("option", [f.name for f in fields(EngineOptions)])
def test_each_engine_option_switched_off_still_equals_reference(arch: str, option: str) -> None:
    """Engine options change how the tracer computes, never what: each one off (GPT-2 runs
    gelu_new, Llama grouped-query attention) still gives the reference loop's numbers."""
    loaded = tiny_loaded(arch, layers=4)
    fact = likeliest_target(loaded, SUBJECT_MIDDLE)
    tracer = Tracer(loaded, TraceSettings(samples=3, window=2), EngineOptions(**{option: False}))
    trace = tracer.trace(fact)
    assert tracer.uses_kv_suffix is (option != "kv_suffix")
    ref = reference_trace(loaded, fact, KINDS, 3, trace.noise.std, 2, 0)
    assert trace.p_clean == pytest.approx(ref["p_clean"], abs=TOL)
    for kind in KINDS:
        assert (torch.tensor(trace.ie[kind]) - torch.tensor(ref["ie"][kind])).abs().max().item() <= TOL
    assert max(abs(v) for kind in KINDS for row in trace.ie[kind] for v in row) > 1e-4


def test_probe_rejects_a_model_that_ignores_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = tiny_loaded("llama")
    tracer = Tracer(loaded, TraceSettings(samples=2))
    # Pretend the forward has no cache argument: the suffix then runs as if it were the prompt.
    monkeypatch.setattr(tracer.engine, "cache_kwarg", "not_a_cache")
    original = loaded.model.forward

    def forward(*args: Any, not_a_cache: Any = None, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", forward)
    trace = tracer.trace(SUBJECT_FIRST)
    assert tracer.uses_kv_suffix is False
    assert "probe" in (tracer.suffix_fallback_reason or "")
    assert trace.ie["hidden"]


def test_batch_size_does_not_change_results() -> None:
    loaded = tiny_loaded("gpt2", layers=4)
    traces = [Tracer(loaded, TraceSettings(samples=4, window=3, batch_size=b)).trace(SUBJECT_MIDDLE) for b in (1, 3, 64, None)]
    for other in traces[1:]:
        assert other.p_corrupt == pytest.approx(traces[0].p_corrupt, abs=1e-6)
        for kind in KINDS:
            assert (torch.tensor(other.ie[kind]) - torch.tensor(traces[0].ie[kind])).abs().max().item() <= 1e-6


def test_sites_run_a_layer_only_once_they_have_started() -> None:
    """A batch holds sites with different first layers (sorted). A layer below a site's
    first restored layer runs only the rows of the sites that have started; the others
    take the corrupted run's output (and the IEs still equal the reference, above)."""
    loaded = tiny_loaded("llama", layers=4)
    rows_seen: dict[int, set[int]] = {}

    def record(index: int) -> Any:
        def hook(_module: Any, args: Any, kwargs: Any) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            rows_seen.setdefault(index, set()).add(hidden.shape[0])

        return hook

    handles = [layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(loaded.model.model.layers)]
    try:
        # hidden sites at layers 0..3 start at layers 1..4: one batch of 4 sites per token
        Tracer(loaded, TraceSettings(samples=3, kinds=("hidden",), batch_size=4)).trace(SUBJECT_LAST)
    finally:
        for handle in handles:
            handle.remove()
    # 1 row: the clean run; 3: the corrupted run. The suffix probe (1 sample, 2 sites) adds
    # 1 row at layer 1 and 2 rows above. Restoration runs: layer 1 runs the first site's 3
    # rows, layer 2 two sites' 6, layer 3 three sites' 9; no layer ever runs all 12 rows.
    assert rows_seen == {0: {1, 3}, 1: {1, 3}, 2: {1, 2, 3, 6}, 3: {1, 2, 3, 9}}


def test_trace_many_equals_trace_one_by_one() -> None:
    loaded = tiny_loaded("qwen2")
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2))
    seen: list[tuple[int, int]] = []
    many = tracer.trace_many([SUBJECT_FIRST, SUBJECT_MIDDLE], progress=lambda done, total: seen.append((done, total)))
    singles = [tracer.trace(f) for f in (SUBJECT_FIRST, SUBJECT_MIDDLE)]
    assert [t.ie for t in many] == [t.ie for t in singles]
    assert seen[-1][0] == seen[-1][1] and len({total for _, total in seen}) == 1
    assert seen[0][0] == 0  # the total is known before the first batch runs


# Prompts of the same shape (15 tokens, subject 0..8 with the tiny tokenizer) and one other.
SAME_SHAPE = [SUBJECT_FIRST, Fact("The Parthenon", "{} is located in the country of", "Greece"),
              Fact("The Big Ben", "{} is located in the country of", "England")]
OTHER_SHAPE = Fact("Mount Fuji", "{} is located in the country of", "Japan")


def count_forwards(loaded: Any) -> Any:
    """A list that grows by one for every forward of the whole model, and its hook handle."""
    calls: list[int] = []
    handle = loaded.model.register_forward_pre_hook(lambda *_args: calls.append(1))
    return calls, handle


def test_facts_of_one_shape_share_forwards_and_still_equal_the_reference() -> None:
    """trace_many puts facts whose prompts have the same shape into the same restoration
    forwards (all kinds of all those facts, one restored token per forward), and each
    fact's IEs still equal the reference loop's."""
    loaded = tiny_loaded("llama", layers=4)
    facts = [likeliest_target(loaded, f) for f in [*SAME_SHAPE, OTHER_SHAPE]]
    tracer = Tracer(loaded, TraceSettings(samples=3, window=2, batch_size=1000))
    shapes = [(len(p.token_ids), p.subject_range) for p in map(tracer.prepare, facts)]
    assert shapes[0] == shapes[1] == shapes[2] == (15, (0, 9)) and shapes[3] != shapes[0]
    noise = NoiseInfo(std=0.5, calibration="given")  # as a fact set shares one
    tracer.trace(facts[3], noise=noise)  # the suffix probe runs here, not below

    calls, handle = count_forwards(loaded)
    try:
        together = tracer.trace_many(facts, noise=noise)
        forwards_together = len(calls)
        calls.clear()
        alone = [tracer.trace(f, noise=noise) for f in facts]
        forwards_alone = len(calls)
    finally:
        handle.remove()
    # Per fact a clean and a corrupted run; then one forward per restored token (15 or 13)
    # for each shape group together, against one per token and fact alone.
    assert forwards_together == 4 * 2 + 15 + 13
    assert forwards_alone == 4 * 2 + 3 * 15 + 13
    assert [t.timings["facts_together"] for t in together] == [3.0, 3.0, 3.0, 1.0]

    for fact, trace, single in zip(facts, together, alone):
        assert trace.fact_id == single.fact_id and trace.p_corrupt == single.p_corrupt
        ref = reference_trace(loaded, fact, KINDS, 3, noise.std, 2, 0)
        for kind in KINDS:
            assert (torch.tensor(trace.ie[kind]) - torch.tensor(ref["ie"][kind])).abs().max().item() <= TOL
            assert (torch.tensor(trace.ie[kind]) - torch.tensor(single.ie[kind])).abs().max().item() <= TOL
        assert max(abs(v) for kind in KINDS for row in trace.ie[kind] for v in row) > 1e-4


def test_one_fact_runs_all_kinds_in_the_same_forwards() -> None:
    loaded = tiny_loaded("gpt2", layers=4)
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2, batch_size=1000))
    tracer.trace(SUBJECT_FIRST)  # the probe
    calls, handle = count_forwards(loaded)
    try:
        trace = tracer.trace(SUBJECT_MIDDLE)
    finally:
        handle.remove()
    start, _end = trace.subject_range
    assert len(calls) == 2 + len(trace.tokens) - start  # clean, corrupted, one per restored token


def test_hooks_and_layers_come_back_after_a_trace() -> None:
    loaded = tiny_loaded("llama", layers=4)
    layers = list(loaded.model.model.layers)
    Tracer(loaded, TraceSettings(samples=2)).trace(SUBJECT_MIDDLE)
    assert list(loaded.model.model.layers) == layers
    assert all(not m._forward_hooks for m in loaded.model.modules())


# -- GELU's tanh form as one kernel -------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "gptj", "phi"])
def test_gelu_new_runs_as_one_kernel_while_tracing_and_comes_back(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPT-2, GPT-J and Phi define their MLP activation as transformers' 8-kernel "gelu_new";
    the tracer runs torch's one-kernel GELU(approximate="tanh") in its place. The reference
    loop runs the model as defined, so the equality tests above also bound the difference."""
    from transformers.activations import NewGELUActivation

    loaded = tiny_loaded(arch, layers=2)
    originals = [m for m in loaded.model.modules() if type(m) is NewGELUActivation]
    assert len(originals) == 2  # one per layer
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2))

    def not_while_tracing(*_args: Any) -> Any:
        raise AssertionError("gelu_new ran during a trace")

    monkeypatch.setattr(NewGELUActivation, "forward", not_while_tracing)
    tracer.trace(SUBJECT_MIDDLE)
    assert [m for m in loaded.model.modules() if type(m) is NewGELUActivation] == originals


def test_models_without_gelu_new_are_left_as_they_are() -> None:
    assert kernels.tanh_gelu_sites(tiny_loaded("llama", layers=2)) == ()
    assert kernels.tanh_gelu_sites(tiny_loaded("gpt_neox", layers=2)) == ()  # exact (erf) GELU


def test_one_kernel_gelu_equals_gelu_new_to_float_rounding() -> None:
    from transformers.activations import NewGELUActivation

    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(0)) * 4
    assert (torch.nn.GELU(approximate="tanh")(x) - NewGELUActivation()(x)).abs().max().item() <= 1e-6


def test_gelu_new_comes_back_when_a_forward_fails() -> None:
    loaded = tiny_loaded("gpt2", layers=2)
    sites = kernels.tanh_gelu_sites(loaded)
    before = [getattr(parent, name) for parent, name in sites]
    with pytest.raises(RuntimeError, match="mid-forward"), kernels.fused_tanh_gelu(sites):
        assert all(isinstance(getattr(parent, name), torch.nn.GELU) for parent, name in sites)
        raise RuntimeError("mid-forward")
    assert [getattr(parent, name) for parent, name in sites] == before


# -- the KV cache of restoration runs ---------------------------------------------------------


def test_prefilled_cache_layer_writes_new_positions_into_its_room() -> None:
    """A restoration forward's keys/values go into the room left after the cached prefix,
    instead of a torch.cat of the whole cache at every layer; the result is the same."""
    room_k, room_v = torch.randn(4, 2, 6, 3), torch.randn(4, 2, 6, 3)
    prefix_k, prefix_v = room_k[:, :, :2].clone(), room_v[:, :, :2].clone()
    layer = stand_ins.prefilled_layer(room_k, room_v, 2, writable=True)
    assert layer.get_seq_length() == 2
    new_k, new_v = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    keys, values = layer.update(new_k, new_v)
    assert torch.equal(keys, torch.cat([prefix_k, new_k], dim=-2)) and torch.equal(values, torch.cat([prefix_v, new_v], dim=-2))
    assert keys.data_ptr() == room_k.data_ptr() and layer.get_seq_length() == 5  # no copy of the prefix
    # A staggered layer runs the leading rows only: the cut survives the update.
    layer.keys, layer.values = layer.keys[:1], layer.values[:1]
    keys, _ = layer.update(new_k[:1, :, :1], new_v[:1, :, :1])
    assert keys.shape == (1, 2, 6, 3) and torch.equal(keys[:, :, 5], new_k[:1, :, 0])


def test_read_only_cache_layer_leaves_the_corrupted_run_alone() -> None:
    corrupted_k, corrupted_v = torch.randn(2, 2, 6, 3), torch.randn(2, 2, 6, 3)
    before = corrupted_k.clone()
    layer = stand_ins.prefilled_layer(corrupted_k, corrupted_v, 2, writable=False)
    keys, _ = layer.update(torch.zeros(2, 2, 4, 3), torch.zeros(2, 2, 4, 3))
    assert torch.equal(corrupted_k, before)
    assert torch.equal(keys, torch.cat([before[:, :, :2], torch.zeros(2, 2, 4, 3)], dim=-2))


def test_a_forward_longer_than_the_room_still_gets_every_position() -> None:
    layer = stand_ins.prefilled_layer(torch.randn(1, 1, 3, 2), torch.randn(1, 1, 3, 2), 2, writable=True)
    keys, _ = layer.update(torch.ones(1, 1, 4, 2), torch.ones(1, 1, 4, 2))
    assert keys.shape == (1, 1, 6, 2) and torch.equal(keys[:, :, 2:], torch.ones(1, 1, 4, 2))


# -- attention kernels on CUDA -------------------------------------------------------------


def test_cuda_attention_runs_without_cudnn_and_the_flags_come_back() -> None:
    """cuDNN builds an attention plan for every new shape, and restoration batches come in
    many: with it, the plans take longer than the attention itself."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with kernels.attention_backends("cuda:0"):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with kernels.attention_backends("cpu"):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_every_tracer_forward_chooses_its_attention_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    from fact_locator.tracing import engine

    # Pretend the model is on CUDA for the kernel choice alone, and look inside each forward.
    monkeypatch.setattr(engine, "attention_backends", lambda _device, **_options: kernels.attention_backends("cuda"))
    loaded = tiny_loaded("gpt2", layers=4)
    cudnn_in_forward: list[bool] = []
    handle = loaded.model.register_forward_pre_hook(lambda *_: cudnn_in_forward.append(torch.backends.cuda.cudnn_sdp_enabled()))
    try:
        Tracer(loaded, TraceSettings(samples=2, window=2)).trace(SUBJECT_MIDDLE)
    finally:
        handle.remove()
    assert len(cudnn_in_forward) > 3 and not any(cudnn_in_forward)


def test_cpu_grouped_query_attention_reads_shared_heads_in_place_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the tracer's forwards hand SDPA the key/value heads as they are
    (`enable_gqa`) instead of copies for every query head; on CUDA (masked GQA falls back to
    the math kernel there) and after the forward, transformers decides as before."""
    from transformers.integrations import sdpa_attention

    original = sdpa_attention.use_gqa_in_sdpa
    key = torch.zeros(1, 2, 5, 16)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    assert not original(mask, key, key)  # transformers' own choice with a mask
    with kernels.attention_backends("cpu"):
        assert sdpa_attention.use_gqa_in_sdpa(mask, key, key)
    assert sdpa_attention.use_gqa_in_sdpa is original
    with kernels.attention_backends("cuda:0"):
        assert sdpa_attention.use_gqa_in_sdpa is original

    # Inside a restoration forward of a model with 4 query and 2 key/value heads, SDPA gets
    # the 2 heads, and no key or value head is repeated.
    loaded = tiny_loaded("llama", layers=2)
    heads: list[tuple[int, bool]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        heads.append((key.shape[1], bool(kwargs.get("enable_gqa", False))))
        return sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    Tracer(loaded, TraceSettings(samples=2, window=2)).trace(SUBJECT_MIDDLE)
    assert heads and all(h == (2, True) for h in heads)

    # Switched off (EngineOptions.cpu_gqa), the masked forwards copy the heads again.
    heads.clear()
    Tracer(loaded, TraceSettings(samples=2, window=2), EngineOptions(cpu_gqa=False)).trace(SUBJECT_MIDDLE)
    assert (4, False) in heads


def test_gelu_new_runs_as_defined_with_the_fused_gelu_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.activations import NewGELUActivation

    calls: list[int] = []
    forward = NewGELUActivation.forward

    def counted(self: Any, x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return forward(self, x)

    monkeypatch.setattr(NewGELUActivation, "forward", counted)
    Tracer(tiny_loaded("gpt2", layers=2), TraceSettings(samples=2, window=2), EngineOptions(fused_gelu=False)).trace(SUBJECT_MIDDLE)
    assert calls


# -- out-of-memory handling ----------------------------------------------------------------


def test_out_of_memory_halves_the_batch_and_retries() -> None:
    calls: list[int] = []
    frees: list[int] = []

    def forward(chunk: Any) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 2 for x in chunk]

    items = list(range(20))
    assert batching.run_in_batches(items, 16, forward, on_oom=lambda: frees.append(1)) == [x * 2 for x in items]
    assert calls[:3] == [16, 8, 4] and set(calls[3:]) <= {2}
    assert len(frees) == 3


def test_out_of_memory_runtime_error_message_counts_too() -> None:
    def forward(chunk: Any) -> list[int]:
        if len(chunk) > 1:
            raise RuntimeError("CUDA error: out of memory")
        return list(chunk)

    assert batching.run_in_batches([1, 2, 3], 4, forward) == [1, 2, 3]


def test_other_errors_and_a_single_item_that_does_not_fit_are_raised() -> None:
    def broken(chunk: Any) -> list[int]:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        batching.run_in_batches([1, 2], 2, broken)

    def never_fits(chunk: Any) -> list[int]:
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        batching.run_in_batches([1, 2], 2, never_fits)


def test_automatic_batch_size_follows_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = tiny_loaded("llama")
    config = loaded.model.config
    rows = batching.auto_batch_rows(config, n_tokens=10, suffix=5, device="cpu", element_bytes=4)
    monkeypatch.setattr(batching, "CPU_BUDGET_BYTES", batching.CPU_BUDGET_BYTES // 4)
    assert batching.auto_batch_rows(config, n_tokens=10, suffix=5, device="cpu", element_bytes=4) == pytest.approx(rows / 4, rel=0.01)
    assert batching.auto_batch_rows(config, n_tokens=100, suffix=100, device="cpu", element_bytes=4) < rows


def test_cuda_budget_counts_memory_the_allocator_holds_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch keeps freed blocks for reuse, and the driver counts them as used: without them
    the budget (and the batch size) would shrink after the first trace."""
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 20 * gib)
    assert batching._budget("cuda:0") == int((10 + 30 - 20) * gib * batching.CUDA_BUDGET_FRACTION)
