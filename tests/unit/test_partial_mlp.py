"""A restoration forward runs each MLP only at the (row, position) pairs whose output can
matter: the last layer at the last position, never at a position a restoration overwrites,
and not where the input is the corrupted run's (the output is copied from it). The traces
still equal the reference loop (test_tracer_equivalence.py); here, what is computed."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.support.tiny_models import TINY_CONFIGS, tiny_loaded

from fact_locator.facts import Fact
from fact_locator.tracing.stand_ins import partial_module
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer

SUBJECT_MIDDLE = Fact("the Eiffel Tower", "In Paris, {} is located in the city of", "Paris")


class CountingLinear(torch.nn.Linear):
    """A Linear that remembers how many vectors it was given."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(d_in, d_out)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.numel() // x.shape[-1]
        return super().forward(x)


def flat_pairs(*pairs: tuple[int, int], positions: int = 3) -> torch.Tensor:
    return torch.tensor([row * positions + position for row, position in pairs])


def test_runs_the_module_on_the_listed_pairs_only_and_fills_or_zeroes_the_rest() -> None:
    torch.manual_seed(0)
    linear = CountingLinear(4, 5)
    x = torch.randn(2, 3, 4)  # 2 rows, 3 positions

    def fill(out: torch.Tensor) -> None:
        out[flat_pairs((1, 0))] = 7.0

    stand_in = partial_module(linear, rows=2, positions=3, width=5, compute=flat_pairs((0, 2), (1, 2)), fill=fill)
    with torch.no_grad():
        out = stand_in(x)
        full = torch.nn.functional.linear(x, linear.weight, linear.bias)
    assert linear.seen == 2
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[:, 2], full[:, 2], rtol=0, atol=1e-6)
    assert (out[1, 0] == 7.0).all()
    assert (out[0, :2] == 0).all() and (out[1, 1] == 0).all()


def test_flat_inputs_keep_their_layout() -> None:
    """OPT calls its fc2 on (batch * tokens, d)."""
    linear = CountingLinear(4, 5)
    stand_in = partial_module(linear, rows=2, positions=3, width=5, compute=flat_pairs((1, 2)))
    with torch.no_grad():
        out = stand_in(torch.randn(6, 4))
    assert out.shape == (6, 5) and linear.seen == 1


def test_nothing_to_compute_never_runs_the_module() -> None:
    linear = CountingLinear(4, 5)
    stand_in = partial_module(linear, rows=2, positions=3, width=5, compute=torch.tensor([], dtype=torch.long))
    with torch.no_grad():
        out = stand_in(torch.randn(2, 3, 4))
    assert linear.seen == 0 and out.shape == (2, 3, 5) and (out == 0).all()


@pytest.mark.parametrize("x", [torch.randn(1, 3, 4), torch.randn(2, 2, 4)], ids=["other rows", "other positions"])
def test_a_call_of_another_shape_runs_the_module_as_it_is(x: torch.Tensor) -> None:
    linear = CountingLinear(4, 5)
    stand_in = partial_module(linear, rows=2, positions=3, width=5, compute=flat_pairs((1, 2)))
    with torch.no_grad():
        out = stand_in(x)
        torch.testing.assert_close(out, torch.nn.functional.linear(x, linear.weight, linear.bias))
    assert linear.seen == x.shape[0] * x.shape[1]


def test_an_output_of_another_width_runs_the_module_as_it_is() -> None:
    linear = CountingLinear(4, 6)
    stand_in = partial_module(linear, rows=2, positions=3, width=5, compute=flat_pairs((1, 2)))
    with torch.no_grad():
        assert stand_in(torch.randn(2, 3, 4)).shape == (2, 3, 6)


def expected_mlp_pairs(kind: str, layer: int, positions: int, n_layers: int) -> int:
    """MLP (row, position) pairs one row of the site (kind, layer) computes, window 1, when
    it restores a token with `positions` positions from it to the end of the prompt:
    - the layers after the first one it computes: every position, but the last layer only
      at the last position (the logits read nothing else);
    - the first one: `hidden` at layer l starts at layer l + 1 (layer l is replayed); `mlp`
      at layer l computes nothing there (the restored position takes the clean output, the
      positions after it, whose input is the corrupted run's, the corrupted output); `attn`
      only its restored position, which the clean attention output changed."""
    last = n_layers - 1
    if kind in ("hidden", "mlp"):
        return positions * max(0, last - layer - 1) + (layer < last)
    if layer < last:
        return 1 + positions * max(0, last - layer - 1) + 1
    return 1 if positions == 1 else 0  # the last layer first: its last position is the restored one


@pytest.mark.parametrize("kind", ["hidden", "mlp", "attn"])
@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_restoration_forwards_compute_only_the_mlp_pairs_that_matter(arch: str, kind: str) -> None:
    loaded = tiny_loaded(arch, layers=4)
    samples = 2
    tracer = Tracer(loaded, TraceSettings(samples=samples, window=1, kinds=(kind,), batch_size=1))
    tracer.trace(SUBJECT_MIDDLE)  # the first trace also runs the KV-suffix probe
    assert tracer.uses_kv_suffix

    pairs = [0]
    restoring = [False]

    def count(_module: Any, args: Any) -> None:
        if restoring[0]:
            pairs[0] += args[0].numel() // args[0].shape[-1]

    original = tracer._restorations.restore

    def restore(*args: Any, **kwargs: Any) -> Any:
        restoring[0] = True
        try:
            return original(*args, **kwargs)
        finally:
            restoring[0] = False

    tracer._restorations.restore = restore  # type: ignore[method-assign]
    n_layers = loaded.n_layers
    mlps = [loaded.model.get_submodule(loaded.adapter.site_path("mlp", layer)) for layer in range(n_layers)]
    handles = [mlp.register_forward_pre_hook(count) for mlp in mlps]
    try:
        trace = tracer.trace(SUBJECT_MIDDLE)
    finally:
        for handle in handles:
            handle.remove()
    n_tokens, start = len(trace.tokens), trace.subject_range[0]
    expected = sum(samples * expected_mlp_pairs(kind, layer, n_tokens - token, n_layers)
                   for token in range(start, n_tokens) for layer in range(n_layers))
    assert pairs[0] == expected
