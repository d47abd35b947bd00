"""Prompts: the subject span comes from offsets, the target is the first token after the prompt."""

import pytest

from fact_locator.errors import FactError
from fact_locator.facts import Fact
from fact_locator.tracing.prompt import prepare_prompt
from tests.support.tiny_models import tiny_tokenizer


def test_subject_span_and_target_token():
    tok = tiny_tokenizer()
    prepared = prepare_prompt(tok, Fact("The Colosseum", "{} is located in the country of", "Italy"))
    start, end = prepared.subject_range
    assert start == 0
    assert "".join(prepared.tokens[start:end]) == "The Colosseum"
    assert prepared.tokens[end] == " is"
    assert prepared.target_token.strip() == tok.decode(tok(" Italy")["input_ids"][:1]).strip()


def test_a_subject_in_the_middle_of_the_prompt():
    prepared = prepare_prompt(tiny_tokenizer(), Fact("Mount Fuji", "Everyone knows that {} is in", "Japan"))
    start, end = prepared.subject_range
    assert start > 0
    assert "".join(prepared.tokens[start:end]).strip() == "Mount Fuji"


def test_the_target_may_be_written_with_or_without_its_leading_space():
    tok = tiny_tokenizer()
    a = prepare_prompt(tok, Fact("Toyota", "{} was founded in the country of", "Japan"))
    b = prepare_prompt(tok, Fact("Toyota", "{} was founded in the country of", " Japan"))
    assert a.target_id == b.target_id


def test_too_long_prompts_are_refused_with_the_lengths():
    with pytest.raises(FactError, match="more than the model's context of 4"):
        prepare_prompt(tiny_tokenizer(), Fact("Toyota", "{} was founded in the country of", "Japan"), max_length=4)


@pytest.mark.parametrize(
    "subject, relation, target, message",
    [
        ("Toyota", "{} was founded in {}", "Japan", "has 2 '{}'"),
        ("Toyota", "was founded in", "Japan", "no '{}'"),
        ("Toyota", "{} was founded in", "  ", "target is empty"),
        ("", "{} was founded in", "Japan", "subject is empty"),
    ],
)
def test_bad_facts_say_what_is_wrong(subject, relation, target, message):
    with pytest.raises(FactError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Fact(subject, relation, target)


def test_a_prompt_must_contain_its_subject():
    with pytest.raises(FactError, match="'Toyota' does not occur in the prompt"):
        Fact.from_prompt("Honda was founded in", "Toyota", "Japan")
    fact = Fact.from_prompt("Back then, Toyota was founded in", "Toyota", "Japan")
    assert fact.relation == "Back then, {} was founded in" and fact.prompt == "Back then, Toyota was founded in"
