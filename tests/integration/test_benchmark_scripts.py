"""The GPU benchmark's timing path runs, on a CPU and a tiny GPT-2 shape, so that a session
that is lent a GPU does not spend its minutes on a broken script; and the pieces it is made
of (GPT-2's tokenizer built from byte-pair ranks, the shipped facts it times) do what they
say."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark scripts importable, as they are when run from the repository root."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT))
    for name in ("bench_tracer", "bench_facts", "bench_timing", "gpt2_tokenizer", "gpt2xl_shape", "option_ab", "work_count"):
        sys.modules.pop(name, None)


def test_gpt2xl_shape_timing_path_runs_on_a_tiny_shape(capsys: pytest.CaptureFixture[str], benchmarks: None) -> None:
    from tests.support.tiny_models import tiny_tokenizer
    from transformers import GPT2Config

    from gpt2xl_shape import gpt2xl_shape

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=1000)
    gpt2xl_shape("cpu", "float32", n_facts=4, samples=2, window=2, config=config, timing=True, profile=True,
                              ceilings=True, compare_cache=True, compare_gelu=True, tokenizer=tiny_tokenizer())
    out = capsys.readouterr().out
    assert "gelu_new; 4 facts of the shipped fact sets, prompts of" in out
    assert "4 facts traced together in" in out and "1 facts one at a time" in out
    assert "round 2 prefilled" in out and "round 2 torch.cat" in out
    assert "GELU's tanh form at 2 MLPs" in out and "round 2 one kernel" in out and "max |IE(one kernel) - IE(gelu_new)|" in out
    assert "# profile:" in out and "CPU operators" in out
    assert re.search(r"model forward, \d+ positions, \d+ cached", out) and "the layer's matrix products alone" in out


def test_shipped_facts_take_the_fact_sets_in_turn(benchmarks: None) -> None:
    from bench_facts import shipped_facts

    from fact_locator.factset import load_factset

    sets = [load_factset(path) for path in sorted((ROOT / "factsets").glob("*.yaml"))]
    facts = shipped_facts()
    assert len(facts) == sum(len(s.facts) for s in sets)
    assert shipped_facts(len(sets)) == [s.facts[0].fact for s in sets]


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
    from tests.support.tiny_models import tiny_tokenizer

    from gpt2_tokenizer import TokenizerBuildError, check_known

    with pytest.raises(TokenizerBuildError, match="GPT-2 as \\[31373, 995\\]"):
        check_known(tiny_tokenizer())


def test_the_h100_estimate_reproduces_the_run_it_is_scaled_to(benchmarks: None) -> None:
    """Without a GPU the benchmark estimates H100 time from run 7's measurement; applied to
    run 7's own prompts the estimate must give back run 7's 1.35 s a fact."""
    from tests.support.tiny_models import tiny_tokenizer
    from transformers import GPT2Config

    import work_count

    from fact_locator.facts import Fact
    from fact_locator.tracing.prompt import prepare_prompt

    config = GPT2Config(n_layer=48, n_embd=1600, n_head=25, n_positions=1024, vocab_size=50257)
    prompts = [prepare_prompt(tiny_tokenizer(), Fact(s, "{} is located in the country of", "Italy"), 1024)
               for s in work_count.RUN7_SUBJECTS]
    # Run 7 computed every MLP position, without forks: counted that way, its own time comes back.
    seconds = work_count.h100_seconds(config, prompts, samples=10, window=10, current=False)
    assert seconds / len(prompts) == pytest.approx(work_count.H100_RUN7_SECONDS, rel=1e-9)
    # The tracer now skips MLP positions and forks: less work, less time.
    assert work_count.h100_seconds(config, prompts, samples=10, window=10) < seconds
    # A shorter prompt runs fewer, smaller forwards: less time.
    short = [prepare_prompt(tiny_tokenizer(), Fact("Toyota", "{} is in", "Japan"), 1024)]
    assert work_count.h100_seconds(config, short, samples=10, window=10) < work_count.H100_RUN7_SECONDS


def test_fast_flops_by_suffix_add_up_to_the_work_count(benchmarks: None) -> None:
    import work_count

    unforked = work_count.fast_flops_by_suffix(7.0, 3.0, n_layers=4, n_tokens=6, start=2, samples=2, window=2, forks=False)
    assert sorted(unforked) == [1, 2, 3, 4]  # tokens 2..5 of 6: forwards of 4..1 positions
    # First computed layers, hidden / mlp / attn: layer 0: 1, 0, 0; 1: 2, 0, 0; 2: 3, 1, 1;
    # 3: 4, 2, 2. So 32 layer runs over 12 sites, each of `positions` positions, plus 12 heads.
    for positions, flops in unforked.items():
        assert flops == 2 * (positions * 32 * 7.0 + 12 * 3.0)
    # Forks: the mlp and attn sites of layer 0 (window 0..0) start at layer 1 from those of
    # layer 1 (window 0..1): 30 layer runs.
    by_suffix = work_count.fast_flops_by_suffix(7.0, 3.0, n_layers=4, n_tokens=6, start=2, samples=2, window=2)
    for positions, flops in by_suffix.items():
        assert flops == 2 * (positions * 30 * 7.0 + 12 * 3.0)
    assert sum(by_suffix.values()) == work_count.work_flops(7.0, 3.0, 4, 6, 2, 2, 2)[1]


def test_mlp_positions_skipped_are_counted_site_by_site(benchmarks: None) -> None:
    """With `mlp`, the count leaves out the MLP positions the tracer skips. 4 layers,
    window 2, a token with 3 positions to the end, hidden / mlp / attn at layer 2: first
    computed layers 3 / 1 / 1, restored layers 2 / 1..2 / 1..2."""
    import work_count

    positions = [[work_count.mlp_positions(kind, first, restored, layer, 3, 4) for layer in range(first, 4)]
                 for kind, first, restored in (("hidden", 3, range(2, 3)), ("mlp", 1, range(1, 3)), ("attn", 1, range(1, 3)))]
    # The last layer: its last position only. mlp: never its restored position; its first
    # layer nothing (the rest is copied). attn: its first layer at the restored position only.
    assert positions == [[1], [0, 2, 1], [1, 3, 1]]
    per_layer, mlp, head = 7.0, 5.0, 3.0
    full = work_count.fast_flops_by_suffix(per_layer, head, 4, 6, 2, 2, 2)
    partial = work_count.fast_flops_by_suffix(per_layer, head, 4, 6, 2, 2, 2, mlp)
    assert all(partial[p] < full[p] for p in full if p > 1)
    # One position to the end (the last token): nothing after it to copy, and the last layer
    # needs it. Skipped: each restored MLP, at that position; the mlp sites at layers 1..3
    # restore 2 layers each (the one at layer 0 is a fork of layer 1's: it restores nothing
    # itself); 2 samples.
    assert full[1] - partial[1] == 2 * mlp * (2 + 2 + 2)


def test_work_ratios_of_the_shipped_facts_split_by_where_the_subject_sits(capsys: pytest.CaptureFixture[str],
                                                                          benchmarks: None) -> None:
    """`--work-ratios` prints the exact reuse bound on realistic prompts, without tracing."""
    from tests.support.tiny_models import tiny_loaded

    from bench_facts import shipped_facts
    from work_count import shipped_work_ratios

    shipped_work_ratios(tiny_loaded("llama"), samples=2, window=2)
    out = capsys.readouterr().out
    n_facts = len(shipped_facts())
    assert f"exact work ratio of the {n_facts} shipped facts" in out
    counts = [int(n) for n in re.findall(r": +(\d+) facts, work ratio median", out)]
    assert len(counts) == 3 and counts[0] == n_facts == counts[1] + counts[2]
    # The reuses always save work: every ratio is above 1.
    assert all(float(r) > 1 for r in re.findall(r"min (\d+\.\d+)", out))


def test_side_by_side_on_shipped_facts_prints_agreeing_traces(capsys: pytest.CaptureFixture[str], benchmarks: None) -> None:
    """`--shipped`: the naive loop and the fast tracer on shipped facts, whose ids name the rows."""
    from tests.support.tiny_models import tiny_loaded

    import bench_tracer
    from bench_facts import shipped_facts

    facts = shipped_facts(2)
    bench_tracer.compare(tiny_loaded("llama"), facts, samples=2, window=2, naive=True)
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in {str(f.id) for f in facts}]
    assert len(rows) == 2
    assert all(float(row[-2]) <= 1e-5 for row in rows)  # max |IE(fast) - IE(naive)|
    assert re.search(r"all facts: fast [\d.]+ s, naive [\d.]+ s, ratio [\d.]+x", out)


@pytest.mark.parametrize("feature", ["partial MLPs", "forks", "reused readout buffers", "grouped-query attention"])
def test_a_feature_is_timed_batch_by_batch_both_ways(feature: str, capsys: pytest.CaptureFixture[str], benchmarks: None) -> None:
    """`--compare-partial-mlps`, `--compare-forks`, `--compare-readout`, `--compare-gqa`:
    every restoration batch of a trace runs with and without the feature (an engine option),
    and the tracer's options are back afterwards."""
    from tests.support.tiny_models import tiny_loaded

    from bench_facts import FACTS
    from option_ab import SWITCHES, batches_ab

    from fact_locator.tracing.engine import EngineOptions
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.tracer import Tracer

    field = SWITCHES[feature]
    assert getattr(EngineOptions(), field) is True
    tracer = Tracer(tiny_loaded("llama"), TraceSettings(samples=2, window=2))
    seen: list[bool] = []  # the option, as each batch ran
    batches = tracer.restoration_batches

    def watched(fact: Any) -> list[Callable[[], Any]]:
        def watch(batch: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                seen.append(getattr(tracer.options, field))
                return batch()

            return run

        return [watch(batch) for batch in batches(fact)]

    tracer.restoration_batches = watched  # type: ignore[method-assign]
    with_, without = batches_ab(tracer, FACTS[0], feature, rounds=2)
    assert with_ > 0 and without > 0
    assert seen.count(True) == seen.count(False) > 0  # every batch both ways
    assert tracer.options == EngineOptions()
    assert len(re.findall(r"round \d: with [\d.]+ s, without [\d.]+ s", capsys.readouterr().out)) == 2


def test_bench_verdicts_takes_the_first_n_draws_of_a_trace_as_the_trace_of_n(benchmarks: None) -> None:
    """bench_verdicts reads fixed-10, auto and 50-draw verdicts off one long trace per seed."""
    import numpy as np
    from tests.support.tiny_models import tiny_loaded

    from bench_verdicts import first_draws
    from fact_locator.facts import Fact
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.tracer import Tracer

    loaded, fact = tiny_loaded("llama", layers=2), Fact("The Colosseum", "{} is in", "Rome")
    settings = TraceSettings(samples=12, window=2, kinds=("mlp",))
    long, short = Tracer(loaded, settings).trace(fact), Tracer(loaded, TraceSettings(samples=5, window=2, kinds=("mlp",))).trace(fact)
    cut = first_draws(long, 5)
    assert cut.n_samples == 5 and cut.settings["samples"] == 5
    assert cut.te == pytest.approx(short.te, abs=1e-6)
    assert np.abs(np.array(cut.ie["mlp"]) - np.array(short.ie["mlp"])).max() <= 1e-6
