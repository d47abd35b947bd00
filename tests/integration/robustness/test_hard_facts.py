"""Facts that are unusual but valid must WORK (trace on a tiny model, pass), and facts that
cannot be traced fail as one item with one located line (exit code 1), never a crash."""

from __future__ import annotations

import pytest

from tests.integration.robustness.clean_failure import assert_no_partial_files, assert_one_clean_line

# (case id, subject, relation, target): each is traced on the tiny Llama and must pass
WORKING_FACTS = [
    ("arabic-rtl", "برج خليفة", "{} is located in the city of", "Dubai"),
    ("hebrew-rtl-target", "Tel Aviv", "{} is a city in", "ישראל"),
    ("rtl-override-char", "The \u202eTower", "{} is located in", "Paris"),
    ("japanese", "東京タワー", "{}は", "日本"),
    ("emoji", "🗼 Tower", "{} stands in", "🇫🇷"),
    ("combining-accents", "Cafe\u0301 de Flore", "{} is located in", "Paris"),
    ("zero-width-target", "Toyota", "{} was founded in", "\u200bJapan"),
    ("subject-twice", "Paris", "Paris is the capital, and {} is in", "France"),
    ("subject-is-target", "Italy", "{} is located in the country of", "Italy"),
    ("subject-overlaps-target", "Japan", "{} was founded in", "Japanese"),
    ("subject-at-start", "Toyota", "{}", "Japan"),
    ("subject-at-end", "the Colosseum", "The city that is home to {}", "Rome"),
    ("quotes-and-braces", 'The "{Big}" Apple', "{} is a nickname of", "New York"),
    ("target-with-spaces", "The Colosseum", "{} is located in the country of ", "  Italy"),
]


def _yaml(facts) -> str:
    import json

    lines = ["name: hard", "unknown: trace", "facts:"]
    for fid, subject, relation, target in facts:
        lines += [f"  - id: {fid}", f"    subject: {json.dumps(subject, ensure_ascii=False)}", f"    relation: {json.dumps(relation, ensure_ascii=False)}",
                  f"    target: {json.dumps(target, ensure_ascii=False)}"]
    return "\n".join(lines) + "\n"


def test_unusual_but_valid_facts_are_traced(fl):
    fl.factset("hard", _yaml(WORKING_FACTS))
    result = fl.run("--fl-json", "results.json", "--fl-html", "report.html", "--fl-kinds", "hidden")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(WORKING_FACTS))
    facts = {f["id"]: f for f in fl.results()["factsets"][0]["facts"]}
    assert set(facts) == {c[0] for c in WORKING_FACTS}
    for fid, subject, relation, _ in WORKING_FACTS:
        trace = facts[fid]["trace"]
        assert facts[fid]["status"] == "traced", fid
        start, end = trace["subject_range"]
        assert 0 <= start < end <= len(trace["tokens"]), fid
        # the subject span is where {} was put, never an earlier occurrence of the same words
        before = "".join(trace["tokens"][:start])
        assert len(before) <= len(relation.split("{}")[0]) + 1, (fid, before)
    assert_no_partial_files(fl.path)


@pytest.mark.parametrize("fact", WORKING_FACTS, ids=[c[0] for c in WORKING_FACTS])
def test_the_subject_span_comes_from_the_offsets(fact):
    from fact_locator.facts import Fact
    from fact_locator.tracing.prompt import prepare_prompt
    from tests.support.tiny_models import tiny_tokenizer

    _, subject, relation, target = fact
    prepared = prepare_prompt(tiny_tokenizer(), Fact(subject, relation, target))
    start, end = prepared.subject_range
    tok = tiny_tokenizer()
    offsets = tok(Fact(subject, relation, target).prompt, return_offsets_mapping=True)["offset_mapping"]
    sub_start = relation.index("{}")
    assert offsets[start][0] <= sub_start < offsets[start][1]
    assert offsets[end - 1][0] < sub_start + len(subject) <= offsets[end - 1][1]


def test_a_prompt_longer_than_the_context_fails_its_item_in_one_line(fl):
    """Tiny GPT-2: n_positions 128. The long fact fails (exit code 1), the short one passes."""
    fl.ini(fl_model="python:fl_tiny:gpt2")
    long_relation = "{} " + "is very " * 100 + "located in"
    fl.factset("long", _yaml([("short", "Toyota", "{} was founded in", "Japan"),
                              ("long", "Toyota", long_relation, "Japan")]))
    result = fl.run("--fl-json", "results.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert_one_clean_line(out, "factsets/long.yaml:", "fact long", "more than the model's context of 128")
    facts = {f["id"]: f for f in fl.results()["factsets"][0]["facts"]}
    assert facts["long"]["status"] == "error" and "context of 128" in facts["long"]["status_reason"]
    assert facts["short"]["status"] == "traced"


def test_a_target_that_tokenizes_to_nothing_is_a_fact_error():
    """A tokenizer that drops a character (here '§', and trailing spaces) gives the target no token."""
    from fact_locator.errors import FactError
    from fact_locator.facts import Fact
    from fact_locator.tracing.prompt import prepare_prompt
    from tests.support.tiny_models import tiny_tokenizer

    real = tiny_tokenizer()

    class Dropping:
        is_fast = True

        def __call__(self, text, **kwargs):
            return real(text.replace("§", "").rstrip() if "§" in text else text, **kwargs)

        def decode(self, ids):
            return real.decode(ids)

    with pytest.raises(FactError, match="target '§' tokenizes to nothing"):
        prepare_prompt(Dropping(), Fact("Toyota", "{} was founded in", "§"))


def test_a_slow_tokenizer_is_a_fact_error_not_a_crash():
    from fact_locator.errors import FactError
    from fact_locator.facts import Fact
    from fact_locator.tracing.prompt import prepare_prompt

    class Slow:
        is_fast = False

    with pytest.raises(FactError, match="a fast tokenizer is needed"):
        prepare_prompt(Slow(), Fact("Toyota", "{} was founded in", "Japan"))
