"""The GPU benchmark's timing path runs, on a CPU and a tiny GPT-2 shape, so that a session
that is lent a GPU does not spend its minutes on a broken script; and the pieces it is made
of (GPT-2's tokenizer built from byte-pair ranks, the shipped facts it times) do what they
say."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark scripts importable, as they are when run from the repository root."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT))
    for name in ("bench_tracer", "gpt2_tokenizer"):
        sys.modules.pop(name, None)


def test_gpt2xl_shape_timing_path_runs_on_a_tiny_shape(capsys: pytest.CaptureFixture[str], benchmarks: None) -> None:
    from tiny_models import tiny_tokenizer
    from transformers import GPT2Config

    import bench_tracer

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=1000)
    bench_tracer.gpt2xl_shape("cpu", "float32", n_facts=4, samples=2, window=2, config=config, timing=True, profile=True,
                              activation="gelu_pytorch_tanh", ceilings=True, compare_cache=True, tokenizer=tiny_tokenizer())
    out = capsys.readouterr().out
    assert "gelu_pytorch_tanh; 4 facts of the shipped fact sets, prompts of" in out
    assert "4 facts traced together in" in out and "1 facts one at a time" in out
    assert "round 2 prefilled" in out and "round 2 torch.cat" in out
    assert "# profile:" in out and "CPU operators" in out
    assert re.search(r"model forward, \d+ positions, \d+ cached", out) and "the layer's matrix products alone" in out


def test_shipped_facts_take_the_fact_sets_in_turn(benchmarks: None) -> None:
    import bench_tracer

    from fact_locator.factset import load_factset

    sets = [load_factset(path) for path in sorted((ROOT / "factsets").glob("*.yaml"))]
    facts = bench_tracer.shipped_facts()
    assert len(facts) == sum(len(s.facts) for s in sets)
    assert bench_tracer.shipped_facts(len(sets)) == [s.facts[0].fact for s in sets]


def test_tokenizer_from_ranks_merges_in_rank_order(benchmarks: None) -> None:
    """A byte-level BPE whose merges come from the ranks alone: 'hell' = 'he' + 'll'."""
    import base64

    from gpt2_tokenizer import END_OF_TEXT, read_ranks, tokenizer_from_ranks

    ranks = {bytes([i]): i for i in range(256)} | {b"he": 256, b"ll": 257, b"hell": 258}
    text = b"\n".join(base64.b64encode(token) + b" " + str(rank).encode() for token, rank in ranks.items())
    assert read_ranks(text) == ranks
    tokenizer = tokenizer_from_ranks(ranks)
    assert tokenizer("hello", add_special_tokens=False)["input_ids"] == [258, ord("o")]
    assert tokenizer(" hello", add_special_tokens=False)["input_ids"] == [ord(" "), 258, ord("o")]
    assert tokenizer.convert_tokens_to_ids(END_OF_TEXT) == 259


def test_a_tokenizer_that_is_not_gpt2s_fails_the_known_encodings(benchmarks: None) -> None:
    from tiny_models import tiny_tokenizer

    from gpt2_tokenizer import TokenizerBuildError, check_known

    with pytest.raises(TokenizerBuildError, match="GPT-2 as \\[31373, 995\\]"):
        check_known(tiny_tokenizer())
