"""ROME's known rule: a fact is known when the greedy continuation of as many tokens as the
target has is the whole target. The first-token rule (`known_rule: first_token`) counts a
fact whose target's first token is the top-1, whatever follows.

The models here are the tiny llama made a bigram model: with the attention and MLP outputs
zeroed, the last position's logits depend on its own token only, and the unembedding is
set so that chosen tokens follow each other."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fact_locator.audit_flow import CleanCheck
from fact_locator.facts import Fact
from fact_locator.locator import Locator
from fact_locator.models.loading import from_objects
from tests.support.tiny_models import tiny_model, tiny_tokenizer

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy")


def _bigram(chain: list[int]) -> Any:
    """The tiny llama whose greedy continuation of FACT's prompt is `chain`."""
    model = tiny_model("llama")
    tokenizer = tiny_tokenizer()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        last_prompt_token = tokenizer(FACT.prompt)["input_ids"][-1]
        embed = model.model.embed_tokens.weight
        for before, after in zip([last_prompt_token, *chain], chain):
            direction = embed[before] / embed[before].norm()
            model.lm_head.weight[after] += 100 * direction
    return from_objects(model, tokenizer, name="tiny-bigram")


ITALY = tuple(tiny_tokenizer()(FACT.prompt + " Italy")["input_ids"][len(tiny_tokenizer()(FACT.prompt)["input_ids"]):])


def whole_target() -> Any:
    """Continues the prompt with every token of ' Italy'."""
    return _bigram(list(ITALY))


def first_token_only() -> Any:
    """Continues with the first token of ' Italy', then a different token."""
    wrong = next(t for t in range(1, len(tiny_tokenizer())) if t not in ITALY)  # 0 pads: a zero embedding
    return _bigram([ITALY[0], wrong, wrong])


def _locator(function: str, tmp_path: Any, **overrides: Any) -> Locator:
    return Locator(model=f"python:tests.unit.test_known_rule:{function}", device="cpu", cache_dir=tmp_path,
                   overrides=overrides)


def test_the_target_is_several_tokens():
    assert len(ITALY) >= 2


def test_a_fact_is_known_when_the_greedy_continuation_is_the_whole_target(tmp_path):
    check = _locator("whole_target", tmp_path).clean(FACT)
    assert check.rule == "greedy_target"
    assert check.greedy_ids == check.target_ids == ITALY
    assert check.known and check.reason == ""


def test_a_fact_whose_first_token_alone_matches_is_unknown_but_the_old_rule_counted_it(tmp_path):
    check = _locator("first_token_only", tmp_path).clean(FACT)
    assert check.top1  # the target's first token is the top-1 ...
    assert check.greedy_ids[0] == ITALY[0] and check.greedy_ids != ITALY  # ... and the next is not the target's
    assert not check.known
    assert "not the target ' Italy' (known_rule greedy_target)" in check.reason
    old = _locator("first_token_only", tmp_path, known_rule="first_token").clean(FACT)
    assert old.rule == "first_token" and old.known


def test_the_fact_set_chooses_the_rule_and_the_session_overrides_it(tmp_path):
    from fact_locator.factset import parse_factset

    text = "name: geo\nknown_rule: first_token\nfacts:\n  - {subject: The Colosseum, relation: '{} is located in the country of', target: Italy}\n"
    factset = parse_factset(text, tmp_path / "geo.yaml")
    assert factset.known_rule == "first_token"
    assert _locator("first_token_only", tmp_path).clean(FACT, factset).known
    assert not _locator("first_token_only", tmp_path, known_rule="greedy_target").clean(FACT, factset).known


def test_a_check_without_the_continuation_applies_the_first_token_rule():
    assert CleanCheck(" Ita", 0.9, " Ita", 0.9).known
    check = CleanCheck(" Ita", 0.9, " Ita", 0.9, greedy_ids=(1, 2), target_ids=(1, 3), greedy_text=" Itb",
                       target_text=" Italy", rule="greedy_target")
    assert not check.known and check.reason.startswith("model continues ' Itb' (greedy, 2 tokens)")
