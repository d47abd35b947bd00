"""The GPU benchmark's timing path runs, on a CPU and a tiny GPT-2 shape, so that a session
that is lent a GPU does not spend its minutes on a broken script."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpt2xl_shape_timing_path_runs_on_a_tiny_shape(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import GPT2Config

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("bench_tracer", None)
    import bench_tracer

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=1000)
    bench_tracer.gpt2xl_shape("cpu", "float32", n_facts=4, samples=2, window=2, config=config, timing=True, profile=True,
                              activation="gelu_pytorch_tanh", ceilings=True, compare_cache=True)
    out = capsys.readouterr().out
    assert "gelu_pytorch_tanh; prompts of 13-15 tokens, subject first" in out
    assert "4 facts traced together in" in out and "1 facts one at a time" in out
    assert "round 2 prefilled" in out and "round 2 torch.cat" in out
    assert "# profile:" in out and "CPU operators" in out
    assert "model forward, 7 positions, 8 cached" in out and "the layer's matrix products alone" in out
