"""The reference loop (`tracing/reference.py`) is an independent check of the engine: it
imports none of the engine's code, and its own noise draws and restored windows are written
from the paper and ROME's `experiments/causal_trace.py`. A mistake in the engine's versions
then makes the equivalence tests fail instead of being shared by both sides."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import fact_locator.tracing.reference as reference
from fact_locator.tracing.corruption import make_noise
from fact_locator.tracing.planning import restored_layers
from fact_locator.tracing.reference import reference_noise, reference_window


def test_the_reference_imports_nothing_of_the_engine() -> None:
    tree = ast.parse(Path(reference.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    # The fact's data class only: no tracing module, no model code of the package.
    assert {m for m in imported if m and m.startswith("fact_locator")} == {"fact_locator.facts"}


@pytest.mark.parametrize(("layer", "expected"), [(0, range(0, 5)), (3, range(0, 8)), (5, range(0, 10)),
                                                 (20, range(15, 25)), (46, range(41, 48)), (47, range(42, 48))])
def test_windows_are_romes_for_ten_layers_on_48(layer: int, expected: range) -> None:
    """ROME (GPT-2 XL, 48 layers, window 10): layers layer-5 .. layer+4, clipped at both ends."""
    assert reference_window("mlp", layer, 48, 10) == list(expected)
    assert reference_window("hidden", layer, 48, 10) == [layer]


@pytest.mark.parametrize("window", [1, 2, 3, 7, 10])
def test_the_engine_restores_the_windows_of_the_reference(window: int) -> None:
    for kind in ("hidden", "mlp", "attn"):
        for layer in range(12):
            assert list(restored_layers(kind, layer, 12, window)) == reference_window(kind, layer, 12, window)


def test_the_reference_draws_noise_of_the_given_std_one_sample_at_a_time() -> None:
    draws = reference_noise(400, 3, 64, 0.25, seed=7)
    assert draws.shape == (400, 3, 64)
    assert draws.std().item() == pytest.approx(0.25, rel=0.02)
    # Draw i depends on the seed and i only: the first 5 of 400 are the 5 drawn alone.
    assert torch.equal(reference_noise(5, 3, 64, 0.25, seed=7), draws[:5])
    uniform = reference_noise(400, 3, 64, 0.25, seed=7, mode="uniform")
    assert uniform.abs().max().item() <= 0.25 * 3**0.5
    assert uniform.std().item() == pytest.approx(0.25, rel=0.02)


@pytest.mark.parametrize("mode", ["gaussian", "uniform"])
@pytest.mark.parametrize("width", [64, 30])
def test_the_engine_draws_the_reference_noise(mode: str, width: int) -> None:
    assert torch.equal(make_noise(4, 2, width, 0.3, 5, mode), reference_noise(4, 2, width, 0.3, 5, mode))
