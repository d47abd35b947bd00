"""Fact-set YAML files: the documented format, and every validation error with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fact_locator.errors import FactSetError
from fact_locator.factset import FactSet, FactSpec, load_factset, parse_factset, slugify

FULL = """\
name: geography
description: where the model keeps facts about places
settings:
  samples: 10
  kinds: mlp,attn
  noise: 0.1
tags: [places]
unknown: fail
min_p_clean: 0.05
expect:
  - te: ">= 0.2"
  - mlp-peak: last_subject
aggregate:
  - ate: ">= 0.15"
  - max-aie: {kind: mlp, at: last_subject, greater-than: {kind: attn, at: last_subject}}
facts:
  - id: colosseum-country
    subject: The Colosseum
    relation: "{} is located in the country of"
    target: Italy
    tags: [landmark]
    known: true
    expect:
      - mlp-peak: middle_subject
      - stronger: {kind: mlp, than: attn, at: last_subject}
  - subject: The Eiffel Tower
    relation: "{} is in the city of"
    target: Paris
"""


def write(tmp_path: Path, text: str, name: str = "geo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> FactSet:
    return load_factset(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> FactSetError:
    path = write(tmp_path, text)
    with pytest.raises(FactSetError) as info:
        load_factset(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:{info.value.line}: "), str(info.value)
    return info.value


def minimal() -> str:
    return "facts:\n  - subject: The Colosseum\n    relation: \"{} is located in the country of\"\n    target: Italy\n"


# ---------------------------------------------------------------------------------------
# The format
# ---------------------------------------------------------------------------------------


def test_full_example_loads(tmp_path):
    fs = load(tmp_path, FULL)
    assert fs.name == "geography"
    assert fs.description == "where the model keeps facts about places"
    assert fs.settings == {"samples": 10, "kinds": ("mlp", "attn"), "noise": 0.1}
    assert fs.tags == ("places",)
    assert (fs.unknown, fs.min_p_clean, fs.line) == ("fail", 0.05, 1)
    assert [e.id for e in fs.expectations] == ["te", "mlp-peak"]
    assert [e.line for e in fs.expectations] == [11, 12]
    assert [e.id for e in fs.aggregate_expectations] == ["ate", "max-aie-mlp-last_subject-gt-attn-last_subject"]
    assert fs.aggregate_expectations[0].source == 'ate: ">= 0.15"'

    first, second = fs.facts
    assert isinstance(first, FactSpec)
    assert first.fact.id == "colosseum-country" and first.line == 17
    assert first.fact.prompt == "The Colosseum is located in the country of"
    assert first.fact.tags == ("landmark",)
    assert first.known is True and second.known is None
    assert second.fact.id == "eiffel-tower-city" and second.line == 26


def test_minimal_set_takes_its_name_from_the_file_and_the_defaults(tmp_path):
    fs = load_factset(write(tmp_path, minimal(), name="capitals.yaml"))
    assert fs.name == "capitals"
    assert (fs.description, fs.settings, fs.tags, fs.unknown, fs.min_p_clean) == ("", {}, (), "skip", 0.0)
    assert fs.expectations == () and fs.aggregate_expectations == ()
    assert fs.path == tmp_path / "capitals.yaml"


def test_parse_factset_from_text():
    fs = parse_factset(minimal(), "inline.yaml")
    assert fs.facts[0].fact.id == "colosseum-located-country"
    assert fs.path == Path("inline.yaml")


def test_set_wide_and_per_fact_expectations_merge_with_the_fact_winning(tmp_path):
    fs = load(tmp_path, FULL)
    first, second = fs.facts
    merged = fs.fact_expectations(first)
    # te (set-wide), mlp-peak (the fact's own replaces the set-wide one, in its place), stronger (own)
    assert [e.id for e in merged] == ["te", "mlp-peak", "stronger-mlp-attn-last_subject"]
    assert merged[1].expectation.category == "middle_subject" and merged[1].line == 24
    assert [e.id for e in fs.fact_expectations(second)] == ["te", "mlp-peak"]
    assert fs.fact_expectations(second)[1].expectation.category == "last_subject"


def test_kinds_as_a_list_and_other_settings(tmp_path):
    fs = load(tmp_path, "settings:\n  kinds: [attn, hidden]\n  model: smollm2-135m\n  window: 6\n"
                        "  seed: 3\n  noise_scale: 2\n" + minimal())
    assert fs.settings == {"kinds": ("hidden", "attn"), "model": "smollm2-135m", "window": 6, "seed": 3,
                           "noise_scale": 2.0}


# ---------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "relation", "slug"),
    [
        ("The Colosseum", "{} is located in the country of", "colosseum-located-country"),
        ("The Space Needle", "{} is located in the city of", "space-needle-located-city"),
        ("Zürich", "{} is a city in", "zurich-city"),
        ("The", "{} is in the", "the-is-in-the"),  # nothing but filler words: keep them
        ("Danny Green", "{} professionally plays the sport of basketball and the", "danny-green-professionally-plays-sport-basketball"),
    ],
)
def test_slug(subject, relation, slug):
    assert slugify(subject, relation) == slug


def test_derived_ids_are_made_unique_and_avoid_explicit_ones(tmp_path):
    fs = load(tmp_path, """\
        facts:
          - subject: Paris
            relation: "{} is the capital of"
            target: France
          - id: paris-capital-2
            subject: Lyon
            relation: "{} is a city in"
            target: France
          - subject: Paris
            relation: "{} is the capital of"
            target: " France"
          - subject: Paris
            relation: "{} is the capital of"
            target: "France!"
        """)
    assert [f.fact.id for f in fs.facts] == ["paris-capital", "paris-capital-2", "paris-capital-3", "paris-capital-4"]


# ---------------------------------------------------------------------------------------
# Validation errors, each with its line
# ---------------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_the_allowed_and_suggests(tmp_path):
    err = error(tmp_path, "name: g\ndescriptoin: oops\n" + minimal())
    assert err.line == 2
    assert "unknown key 'descriptoin' in the fact set; did you mean 'description'?" in err.message
    assert "(allowed: name, description, settings, tags, unknown, known_rule, min_p_clean, expect, aggregate, facts)" in err.message


def test_unknown_fact_key(tmp_path):
    err = error(tmp_path, """\
        facts:
          - subject: The Colosseum
            relaton: "{} is in"
            target: Italy
        """)
    assert err.line == 3 and "unknown key 'relaton' in the fact; did you mean 'relation'?" in err.message


def test_unknown_settings_key(tmp_path):
    err = error(tmp_path, "settings:\n  sample: 3\n" + minimal())
    assert err.line == 2 and "did you mean 'samples'?" in err.message


def test_missing_field_points_at_the_fact(tmp_path):
    err = error(tmp_path, """\
        facts:
          - subject: The Colosseum
            relation: "{} is in"
            target: Italy
          - subject: The Louvre
            relation: "{} is in"
        """)
    assert err.line == 5 and "the fact is missing 'target'" in err.message


def test_duplicate_ids_name_both_lines(tmp_path):
    err = error(tmp_path, """\
        facts:
          - id: same
            subject: A
            relation: "{} is in"
            target: X
          - id: same
            subject: B
            relation: "{} is in"
            target: Y
        """)
    assert err.line == 6 and "duplicate fact id 'same' (first used on line 2)" in err.message


def test_bad_fact_id(tmp_path):
    err = error(tmp_path, """\
        facts:
          - id: "has space"
            subject: A
            relation: "{} is in"
            target: X
        """)
    assert err.line == 2 and "fact id 'has space' must match" in err.message


@pytest.mark.parametrize(("relation", "message"), [("is in", "has no '{}'"), ("{} and {} are in", "has 2 '{}'")])
def test_relation_needs_exactly_one_placeholder(tmp_path, relation, message):
    err = error(tmp_path, f"""\
        facts:
          - subject: A
            target: X
            relation: "{relation}"
        """)
    assert err.line == 4 and message in err.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("settings:\n  samples: ten\n", 2, "settings.samples: samples must be an integer >= 1, got 'ten'"),
        ("settings:\n  samples: 0\n", 2, "samples must be an integer >= 1, got 0"),
        ("settings:\n  window: 2.5\n", 2, "window must be an integer >= 1"),
        ("settings:\n  kinds: [mlp, ffn]\n", 2, "unknown kind 'ffn'"),
        ("settings:\n  kinds: 3\n", 2, "kinds must be a list"),
        ("settings:\n  noise: -1\n", 2, "noise must be a positive number"),
        ("settings:\n  noise: yes\n", 2, "noise must be a positive number, got bool True"),
        ("settings:\n  model: 7\n", 2, "settings.model must be a string"),
        ("settings: [1, 2]\n", 1, "settings must be a mapping"),
        ("unknown: skipp\n", 1, "unknown must be one of skip, fail, trace, got 'skipp'; did you mean 'skip'?"),
        ("min_p_clean: 2\n", 1, "min_p_clean must be a probability between 0 and 1"),
        ("tags: 3\n", 1, "tags must be a list of strings"),
        ("name: 5\n", 1, "name must be a string"),
        ("name: my set\n", 1, "name 'my set' must match"),
    ],
)
def test_wrong_types_and_bad_settings(tmp_path, text, line, message):
    err = error(tmp_path, text + minimal())
    assert err.line == line, str(err)
    assert message in err.message, str(err)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("target", "1889", 'target must be a string, got int 1889; quote it: target: "1889"'),
     ("subject", '""', "subject is empty"),
     ("known", "maybe", "known must be true or false"),
     ("tags", "[ok, 3]", "each of tags must be a non-empty string, got 3")],
)
def test_wrong_fact_field_types(tmp_path, field, value, message):
    fields = {"subject": "A", "relation": '"{} is in"', "target": "X", field: value}
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    err = error(tmp_path, "facts:\n  - id: f\n" + body)
    assert err.line == 3 + list(fields).index(field), str(err)
    assert message in err.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the fact set is empty"),
        ("# only a comment\n", 1, "the fact set is empty"),
        ("name: g\n", 1, "the fact set has no facts: add a 'facts:' list"),
        ("name: g\nfacts:\n", 2, "'facts:' is empty"),
        ("name: g\nfacts: []\n", 2, "'facts:' is empty"),
        ("facts: {a: 1}\n", 1, "facts must be a list"),
        ("- a\n- b\n", 1, "a fact set is a mapping with 'facts:'"),
    ],
)
def test_empty_sets(tmp_path, text, line, message):
    err = error(tmp_path, text)
    assert err.line == line and message in err.message, str(err)


def test_invalid_yaml_reports_the_problem_line(tmp_path):
    err = error(tmp_path, """\
        name: g
        facts:
          - subject: "unterminated
            relation: x
        """)
    assert err.message.startswith("invalid YAML")
    assert err.line == 5  # PyYAML's problem_mark: end of the stream, where the string never closed


def test_invalid_yaml_bad_indentation(tmp_path):
    err = error(tmp_path, "name: g\nfacts:\n  - subject: A\n   relation: x\n")
    assert err.message.startswith("invalid YAML") and err.line == 4


def test_tabs_in_indentation(tmp_path):
    err = error(tmp_path, "name: g\nfacts:\n  - subject: A\n\trelation: x\n")
    assert err.line == 4 and "tab character in the indentation" in err.message


def test_a_tab_inside_a_value_is_fine(tmp_path):
    fs = load(tmp_path, 'facts:\n  - subject: "A\\tB"\n    relation: "{} is\tin"\n    target: X\n')
    assert fs.facts[0].fact.relation == "{} is\tin"


def test_duplicate_keys_are_an_error(tmp_path):
    err = error(tmp_path, """\
        facts:
          - subject: A
            relation: "{} is in"
            target: X
            target: Y
        """)
    assert err.line == 5 and "duplicate key 'target' (first on line 4)" in err.message


def test_duplicate_top_level_key(tmp_path):
    err = error(tmp_path, "name: a\nname: b\n" + minimal())
    assert err.line == 2 and "duplicate key 'name'" in err.message


def test_unsafe_tags_are_refused(tmp_path):
    err = error(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n" + minimal())
    assert err.line == 1 and "cannot read the value" in err.message


def test_expectation_errors_point_at_their_line(tmp_path):
    err = error(tmp_path, """\
        expect:
          - te: ">= 0.2"
          - mlp-peek: last_subject
        facts:
          - subject: A
            relation: "{} is in"
            target: X
        """)
    assert err.line == 3 and "did you mean 'mlp-peak'?" in err.message


def test_expectation_argument_errors_point_at_the_argument_line(tmp_path):
    err = error(tmp_path, """\
        facts:
          - subject: A
            relation: "{} is in"
            target: X
            expect:
              - ie:
                  kind: mlp
                  at: last_subjet
                  min: 0.1
        """)
    assert err.line == 8 and "did you mean 'last_subject'?" in err.message


def test_aggregate_expectation_under_expect_is_refused(tmp_path):
    err = error(tmp_path, "expect:\n  - ate: '>= 0.1'\n" + minimal())
    assert err.line == 2 and "'ate' is an aggregate expectation" in err.message


def test_per_fact_expectation_under_aggregate_is_refused(tmp_path):
    err = error(tmp_path, "aggregate:\n  - ate: '>= 0.1'\n  - te: '>= 0.1'\n" + minimal())
    assert err.line == 3 and "'te' is a per-fact expectation; put it under 'expect:'" in err.message


def test_duplicate_expectation_ids_in_one_list(tmp_path):
    err = error(tmp_path, "expect:\n  - te: '>= 0.1'\n  - te: '>= 0.2'\n" + minimal())
    assert err.line == 3 and "duplicate expectation id 'te' in expect (first on line 2)" in err.message
    # an explicit id makes them distinct
    fs = load(tmp_path, "expect:\n  - te: '>= 0.1'\n  - te: '>= 0.2'\n    id: te-high\n" + minimal())
    assert [e.id for e in fs.expectations] == ["te", "te-high"]


def test_expect_must_be_a_list(tmp_path):
    err = error(tmp_path, "expect:\n  te: '>= 0.1'\n" + minimal())
    assert err.line == 2 and "expect must be a list of expectations" in err.message


def test_xfail_and_id_keep_their_lines(tmp_path):
    err = error(tmp_path, "expect:\n  - te: '>= 0.1'\n    xfail: 3\n" + minimal())
    assert err.line == 3 and "'xfail' takes the reason as a string" in err.message
    fs = load(tmp_path, "expect:\n  - te: '>= 0.1'\n    xfail: small models forget\n" + minimal())
    assert fs.expectations[0].xfail == "small models forget"


def test_missing_file(tmp_path):
    with pytest.raises(FactSetError, match="cannot read the fact set"):
        load_factset(tmp_path / "nope.yaml")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: g\ndescription: caf\xe9\n")
    with pytest.raises(FactSetError) as info:
        load_factset(path)
    assert info.value.line == 2 and "not UTF-8" in info.value.message


def test_importing_factset_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, fact_locator.factset, fact_locator.expectations, fact_locator.cache; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_unsafe_scalar_tags_are_refused(tmp_path):
    err = error(tmp_path, "name: !!python/name:os.system\n" + minimal())
    assert err.line == 1 and "cannot read the value" in err.message


def test_unsafe_mapping_tags_are_refused(tmp_path):
    err = error(tmp_path, """\
        facts:
          - !!python/object:os.Popen
            subject: A
            relation: "{} is in"
            target: X
        """)
    assert err.line == 2 and "the YAML tag 'tag:yaml.org,2002:python/object:os.Popen' is not allowed" in err.message


def test_anchors_and_aliases_work_like_safe_load(tmp_path):
    fs = load(tmp_path, """\
        facts:
          - subject: A
            relation: &rel "{} is located in"
            target: X
          - subject: B
            relation: *rel
            target: Y
        """)
    assert fs.facts[1].fact.relation == "{} is located in"


def test_keys_written_without_a_value_count_as_absent(tmp_path):
    fs = load(tmp_path, """\
        description:
        settings:
        tags:
        expect:
        aggregate:
        facts:
          - subject: A
            relation: "{} is in"
            target: X
            tags:
            expect:
        """)
    assert (fs.description, fs.settings, fs.tags, fs.expectations, fs.aggregate_expectations) == ("", {}, (), (), ())
    assert fs.facts[0].fact.tags == () and fs.facts[0].expectations == ()


# -- method extensions: distractor, replacements, corruption and metric -------------------------
METHOD_SET = """\
settings:
  corruption: str
  metric: logit_diff
facts:
  - subject: Toyota
    relation: "{} was founded in"
    target: Japan
    distractor: China
    replacements: [Honda, Nissan, Honda]
  - subject: Honda
    relation: "{} was founded in"
    target: Japan
"""


def test_distractor_replacements_and_method_settings_reach_the_fact(tmp_path):
    fs = load(tmp_path, METHOD_SET)
    assert fs.settings == {"corruption": "str", "metric": "logit_diff"}
    first, second = fs.facts
    assert first.fact.distractor == "China"
    assert first.fact.replacements == ("Honda", "Nissan")  # deduplicated, in order
    assert second.fact.distractor is None and second.fact.replacements == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("  metric: logit_diff", "  metric: logits", 3, "settings.metric: unknown metric 'logits'"),
        ("  corruption: str", "  corruption: noise", 2, "settings.corruption: unknown corruption 'noise'"),
        ("  corruption: str", "  corruption: 3", 2, "settings.corruption: corruption must be a string"),
        ("    distractor: China", "    distractor: 7", 8, "distractor must be a string"),
        ("    distractor: China", '    distractor: "  "', 8, "distractor is empty"),
        ("    replacements: [Honda, Nissan, Honda]", "    replacements: Honda", 9, "replacements must be a list"),
        ("    replacements: [Honda, Nissan, Honda]", "    replacements: []", 9, "replacements is empty"),
        ("    replacements: [Honda, Nissan, Honda]", "    replacements:\n      - Honda\n      - 5", 11,
         "each of replacements must be a string"),
        ("    replacements: [Honda, Nissan, Honda]", "    replacements: [Toyota]", 9, "the fact's own subject"),
    ],
)
def test_method_keys_are_validated_with_their_line(tmp_path, old, new, line, fragment):
    exc = error(tmp_path, METHOD_SET.replace(old, new))
    assert exc.line == line, str(exc)
    assert fragment in str(exc)


def test_an_unknown_fact_key_lists_distractor_and_replacements(tmp_path):
    exc = error(tmp_path, METHOD_SET.replace("distractor: China", "distracter: China"))
    assert "did you mean 'distractor'?" in str(exc) and "replacements" in str(exc)
