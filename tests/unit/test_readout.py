"""The read-out of restoration forwards: logits written into a buffer reused from batch to
batch, and the metric of rows of several facts at once. (That whole traces through it still
equal the reference loop, for every metric and architecture, is test_tracer_equivalence's
and test_corruption_and_metrics' business.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.support.tiny_models import TINY_CONFIGS, tiny_loaded

from fact_locator.facts import Fact
from fact_locator.tracing.metrics import metric_values, row_metric_values
from fact_locator.tracing.prompt import PreparedPrompt
from fact_locator.tracing.readout import Readout, finite_rows
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.tracer import Tracer

TOL = 1e-6


@pytest.mark.parametrize("bias", [False, True], ids=["no bias", "bias"])
def test_the_buffered_head_equals_the_linear_it_stands_in_for(bias: bool) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 40, bias=bias)
    readout = Readout()
    head = readout.head(linear)
    assert head is not None
    hidden = torch.randn(6, 5, 16)
    last = hidden[:, -1:, :]  # what logits_to_keep=1 hands the head: a strided view
    with torch.inference_mode():  # as the tracer runs
        logits = head(last)
        assert logits.shape == (6, 1, 40)
        assert (logits - linear(last)).abs().max().item() <= TOL
        assert logits.data_ptr() == readout.buffer("logits", 6, 40, torch.float32, "cpu").data_ptr()
    with_grad = head(last)  # out= does no autograd: the layer itself runs
    assert with_grad.requires_grad and (with_grad - linear(last)).abs().max().item() <= TOL


def test_a_batch_no_bigger_than_the_last_reuses_its_buffer() -> None:
    readout = Readout()
    first = readout.buffer("logits", 8, 40, torch.float32, "cpu")
    smaller = readout.buffer("logits", 3, 40, torch.float32, "cpu")
    assert smaller.shape == (3, 40) and smaller.is_contiguous()
    assert smaller.data_ptr() == first.data_ptr()
    bigger = readout.buffer("logits", 9, 40, torch.float32, "cpu")
    assert bigger.shape == (9, 40)
    assert readout.buffer("logits", 8, 40, torch.float32, "cpu").data_ptr() == bigger.data_ptr()
    assert readout.buffer("logits", 8, 41, torch.float32, "cpu").shape == (8, 41)  # another vocabulary
    readout.clear()
    assert readout._buffers == {}


def test_only_a_plain_linear_head_is_stood_in_for() -> None:
    class ScaledHead(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    assert Readout().head(ScaledHead(4, 5)) is None
    assert Readout().head(torch.nn.Embedding(5, 4)) is None


def prepared_with(target: int, distractor: int | None) -> PreparedPrompt:
    fact = Fact("S", "{} is", "T")
    return PreparedPrompt(fact=fact, token_ids=(1, 2), tokens=("S", " is"), subject_range=(0, 1),
                          target_id=target, target_token=" T", distractor_id=distractor)


@pytest.mark.parametrize("metric", ["prob", "logprob", "logit_diff"])
@pytest.mark.parametrize("scratch", [False, True], ids=["new softmax", "softmax into a buffer"])
def test_rows_of_two_facts_get_their_own_fact_s_value(metric: str, scratch: bool) -> None:
    """A batch of two facts' rows (targets 3 and 7, distractors 1 and 2) gives each row what
    `metric_values` gives its fact."""
    torch.manual_seed(0)
    logits = torch.randn(5, 10) * 3
    facts = [prepared_with(3, 1), prepared_with(7, 2)]
    row_fact = torch.tensor([0, 1, 1, 0, 1])
    targets = torch.tensor([facts[f].target_id for f in row_fact.tolist()])
    distractors = torch.tensor([facts[f].distractor_id for f in row_fact.tolist()])
    buffer = torch.full_like(logits, float("nan")) if scratch else None
    values = row_metric_values(metric, logits, targets, distractors, buffer)
    expected = torch.stack([metric_values(metric, logits[i : i + 1], facts[f])[0] for i, f in enumerate(row_fact.tolist())])
    assert (values - expected).abs().max().item() <= TOL
    assert row_metric_values(metric, logits, targets, distractors).shape == (5,)


def test_the_readout_writes_its_softmax_into_a_reused_buffer() -> None:
    readout = Readout()
    logits = torch.randn(4, 10)
    readout.values("prob", logits, torch.tensor([0, 1, 2, 3]), None)
    softmax = readout.buffer("softmax", 4, 10, torch.float32, "cpu")
    assert (softmax - torch.softmax(logits, dim=-1)).abs().max().item() <= TOL


def test_finite_rows_flags_nan_and_both_infinities() -> None:
    logits = torch.zeros(4, 6)
    logits[1, 2] = float("nan")
    logits[2, 0] = float("inf")
    logits[3, 5] = float("-inf")
    assert finite_rows(logits).tolist() == [True, False, False, False]
    assert finite_rows(torch.full((1, 49152), 1e30)).tolist() == [True]  # large, and its sum still in range
    assert finite_rows(torch.full((1, 50), 3e38)).tolist() == [False]  # a sum beyond float32 counts as not finite


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_restoration_logits_go_through_the_buffer_and_the_head_comes_back(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tiny architecture's output embedding is a plain linear layer that the tracer
    stands in for during restoration forwards; afterwards the model has its own back and
    the tracer holds no buffer."""
    loaded = tiny_loaded(arch, layers=2)
    head = loaded.model.get_output_embeddings()
    asked: list[str] = []
    buffer = Readout.buffer

    def counted(self: Readout, name: str, *args: Any) -> torch.Tensor:
        asked.append(name)
        return buffer(self, name, *args)

    monkeypatch.setattr(Readout, "buffer", counted)
    tracer = Tracer(loaded, TraceSettings(samples=2, window=2))
    tracer.trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))
    assert asked.count("logits") > 0 and asked.count("softmax") == asked.count("logits")
    assert loaded.model.get_output_embeddings() is head
    assert tracer._readout._buffers == {}
