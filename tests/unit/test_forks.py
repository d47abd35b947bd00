"""Windows clipped at layer 0 share their start: with window 4, the mlp sites of layers 0, 1
and 2 restore layers 0-1, 0-2 and 0-3 of their token, so up to layer 1 all three compute
the same states, and up to layer 2 the last two. A restoration batch runs the longest of
them from layer 0 and starts each shorter one at its window's end from that site's state
(a fork), which leaves out the layers they share. The traces still equal the reference
loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.support.tiny_models import TINY_CONFIGS, tiny_loaded

from fact_locator.facts import Fact
from fact_locator.tracing.reference import reference_trace
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.clean_run import clean_run
from fact_locator.tracing.corrupted_run import FactRun, corrupted_run
from fact_locator.tracing.engine import EngineOptions
from fact_locator.tracing.planning import Site
from fact_locator.tracing.tracer import Tracer

TOL = 1e-5
FACT = Fact("the Eiffel Tower", "In Paris, {} is located in the city of", "Paris")
LAYERS, WINDOW, SAMPLES = 6, 4, 2


def suffix_tracer(loaded: Any, **settings: Any) -> Tracer:
    tracer = Tracer(loaded, TraceSettings(**{"samples": SAMPLES, "window": WINDOW, "batch_size": 1000} | settings))
    tracer.trace(FACT)  # the first trace runs the KV-suffix probe
    assert tracer.uses_kv_suffix
    return tracer


@pytest.fixture(scope="module")
def llama() -> Tracer:
    return suffix_tracer(tiny_loaded("llama", layers=LAYERS))


def test_windows_clipped_at_layer_zero_fork_from_the_longest(llama: Tracer) -> None:
    sites = [Site(0, kind, layer, 5) for kind in KINDS for layer in range(LAYERS)]
    index = {(s.kind, s.layer): i for i, s in enumerate(sites)}
    assert llama._plan().forks(sites) == {
        index["mlp", 0]: index["mlp", 2], index["mlp", 1]: index["mlp", 2],
        index["attn", 0]: index["attn", 2], index["attn", 1]: index["attn", 2],
    }


def test_a_fork_needs_its_donor_in_the_same_batch(llama: Tracer) -> None:
    assert llama._plan().forks([Site(0, "mlp", 0, 5), Site(0, "mlp", 1, 5)]) == {0: 1}  # the longest window present
    assert llama._plan().forks([Site(0, "mlp", 0, 5), Site(0, "attn", 2, 5)]) == {}  # another kind
    assert llama._plan().forks([Site(0, "mlp", 0, 5), Site(1, "mlp", 2, 5)]) == {}  # another fact
    assert llama._plan().forks([Site(0, "mlp", 0, 5), Site(0, "mlp", 2, 6)]) == {}  # another token
    assert llama._plan().forks([Site(0, "mlp", 1, 5), Site(0, "mlp", 3, 5)]) == {}  # layer 3's window starts at 1
    assert llama._plan().forks([Site(0, "hidden", 0, 5), Site(0, "hidden", 1, 5)]) == {}


def test_sites_may_come_in_any_order_and_their_values_come_back_in_it(llama: Tracer) -> None:
    """`Restorations.restore` runs a batch sorted by first computed layer (forks after their
    donors) and returns the values in the order it was given."""
    with torch.inference_mode():
        prepared = llama.prepare(FACT)
        clean = clean_run(llama.engine, prepared, KINDS)
        draws, _noise = llama._corruption(prepared, clean, None)
        run = FactRun(prepared, clean.states, draws, corrupted_run(llama.engine, prepared, draws, keep=True))
        token = prepared.subject_range[0]
        sites = [Site(0, kind, layer, token) for kind in KINDS for layer in range(LAYERS)]
        forward = llama._restorations.restore([run], token, sites, llama._plan())
        backward = llama._restorations.restore([run], token, sites[::-1], llama._plan())
    assert (forward - backward.flip(0)).abs().max().item() <= 1e-6


def layer_pairs(tracer: Tracer) -> int:
    """(row, position) pairs the decoder layers run in one trace of FACT."""
    loaded = tracer.loaded
    pairs = [0]

    def count(_module: Any, args: Any, kwargs: Any) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        pairs[0] += hidden.numel() // hidden.shape[-1]

    layers = [loaded.model.get_submodule(loaded.adapter.layer_path(i)) for i in range(loaded.n_layers)]
    handles = [layer.register_forward_pre_hook(count, with_kwargs=True) for layer in layers]
    try:
        tracer.trace(FACT)
    finally:
        for handle in handles:
            handle.remove()
    return pairs[0]


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_forks_skip_the_shared_layers_and_still_equal_the_reference(arch: str) -> None:
    loaded = tiny_loaded(arch, layers=LAYERS)
    tracer = suffix_tracer(loaded)
    trace = tracer.trace(FACT)
    ref = reference_trace(loaded, FACT, KINDS, SAMPLES, trace.noise.std, WINDOW, 0)
    for kind in KINDS:
        diff = (torch.tensor(trace.ie[kind]) - torch.tensor(ref["ie"][kind])).abs().max().item()
        assert diff <= TOL, f"{kind}: max |IE - reference| = {diff:.3g}"

    with_forks = layer_pairs(tracer)
    tracer.options = EngineOptions(forks=False)
    without = layer_pairs(tracer)
    # Per window kind and restored token t: the sites of layers 0 and 1 skip layers 0-1 and
    # 0-2 (2 + 3 layers) at each of the T - t positions the batch runs, for each sample.
    n_tokens, start = len(trace.tokens), trace.subject_range[0]
    assert without - with_forks == sum(2 * (2 + 3) * (n_tokens - t) * SAMPLES for t in range(start, n_tokens))
