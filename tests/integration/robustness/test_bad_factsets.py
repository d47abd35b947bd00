"""Bad fact-set files: each one is a collection error of one line, `factsets/bad.yaml:LINE: message`,
with pytest's exit code 1 (the plugin continues past broken fact-set files, so the run
fails like a failing test, not with an interrupted collection's 2), no traceback, and no
half-written output. The table below is docs/robustness.md's fact-set table."""

from __future__ import annotations

import time

import pytest

from tests.integration.robustness.clean_failure import assert_no_partial_files, assert_one_clean_line

FACT = '  - subject: The Colosseum\n    relation: "{} is located in the country of"\n    target: Italy\n'

# (case id, file text, line, message part)
BAD_FACTSETS = [
    ("broken-yaml", 'facts:\n  - subject: "The Colosseum\n    relation: x\n', 4, "invalid YAML"),
    ("unclosed-list", "facts: [\n" + FACT, 2, "invalid YAML"),
    ("tab-indent", "facts:\n\t- subject: x\n", 2, "tab character in the indentation"),
    ("empty-file", "", 1, "the fact set is empty"),
    ("only-comments", "# nothing here\n", 1, "the fact set is empty"),
    ("facts-empty", "name: x\nfacts:\n", 2, "'facts:' is empty"),
    ("facts-empty-list", "facts: []\n", 1, "'facts:' is empty"),
    ("no-facts-key", "name: x\n", 1, "add a 'facts:' list"),
    ("facts-not-list", "facts: hello\n", 1, "facts must be a list of facts"),
    ("top-level-list", "- subject: x\n", 1, "a fact set is a mapping"),
    ("unknown-top-key", "fact:\n" + FACT, 1, "unknown key 'fact' in the fact set; did you mean 'facts'?"),
    ("unknown-fact-key", "facts:\n" + FACT + "    traget: Rome\n", 5, "unknown key 'traget' in the fact; did you mean 'target'?"),
    ("duplicate-key", "facts:\n" + FACT + "    target: Rome\n", 5, "duplicate key 'target' (first on line 4)"),
    ("duplicate-id", "facts:\n  - id: a\n    subject: x\n    relation: '{} is'\n    target: y\n"
                     "  - id: a\n    subject: z\n    relation: '{} is'\n    target: y\n",
     6, "duplicate fact id 'a' (first used on line 2)"),
    ("missing-target", 'facts:\n  - subject: x\n    relation: "{} is"\n', 2, "the fact is missing 'target'"),
    ("relation-without-braces", "facts:\n  - subject: x\n    relation: is in\n    target: y\n", 3, "has no '{}'"),
    ("relation-two-braces", 'facts:\n  - subject: x\n    relation: "{} and {}"\n    target: y\n', 3, "has 2 '{}'"),
    ("target-number", 'facts:\n  - subject: Eiffel\n    relation: "{} was built in"\n    target: 1889\n', 4,
     'target must be a string, got int 1889; quote it: target: "1889"'),
    ("subject-list", 'facts:\n  - subject: [a, b]\n    relation: "{} is"\n    target: y\n', 2, "subject must be a string, got list"),
    ("subject-blank", 'facts:\n  - subject: "   "\n    relation: "{} is"\n    target: y\n', 2, "subject is empty"),
    ("target-whitespace-only", 'facts:\n  - subject: x\n    relation: "{} is"\n    target: "  "\n', 4, "target is empty"),
    ("lone-surrogate", 'facts:\n  - subject: "\\ud83d Tower"\n    relation: "{} is"\n    target: y\n', 2,
     "subject holds a lone surrogate '\\ud83d'"),
    ("known-maybe", "facts:\n" + FACT + "    known: maybe\n", 5, "known must be true or false, got 'maybe'"),
    ("tags-number", "tags: 5\nfacts:\n" + FACT, 1, "tags must be a list of strings"),
    ("bad-id", "facts:\n  - id: has space\n    subject: x\n    relation: '{} is'\n    target: y\n", 2,
     "fact id 'has space' must match"),
    ("bad-name", "name: ../evil\nfacts:\n" + FACT, 1, "name '../evil' must match"),
    ("samples-word", "settings:\n  samples: ten\nfacts:\n" + FACT, 2, "settings.samples: samples must be an integer >= 1, got 'ten'"),
    ("samples-zero", "settings:\n  samples: 0\nfacts:\n" + FACT, 2, "samples must be an integer >= 1, got 0"),
    ("samples-negative", "settings:\n  samples: -3\nfacts:\n" + FACT, 2, "samples must be an integer >= 1, got -3"),
    ("seed-negative", "settings:\n  seed: -1\nfacts:\n" + FACT, 2, "seed must be an integer >= 0, got -1"),
    ("window-zero", "settings:\n  window: 0\nfacts:\n" + FACT, 2, "window must be an integer >= 1, got 0"),
    ("noise-negative", "settings:\n  noise: -0.5\nfacts:\n" + FACT, 2, "settings.noise: noise must be a positive number"),
    ("noise-nan", "settings:\n  noise: .nan\nfacts:\n" + FACT, 2, "settings.noise: noise must be a positive number"),
    ("unknown-kind", "settings:\n  kinds: [ffn]\nfacts:\n" + FACT, 2, "unknown kind 'ffn'"),
    ("unknown-setting", "settings:\n  batchsize: 4\nfacts:\n" + FACT, 2, "unknown key 'batchsize' in the settings"),
    ("not-a-factset", "jobs:\n  - build\n", 1, "not a fact set: it has no 'facts:' list"),
    ("unknown-rule", "unknown: ignore\nfacts:\n" + FACT, 1, "unknown must be one of skip, fail, trace, got 'ignore'"),
    ("min-p-clean-2", "min_p_clean: 2\nfacts:\n" + FACT, 1, "min_p_clean must be a probability between 0 and 1"),
    ("python-tag", 'facts:\n  - subject: !!python/object/apply:os.system ["echo pwned"]\n    relation: "{} is"\n    target: y\n', 2,
     "the YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    ("merge-key", "base: &b {target: Italy}\nfacts:\n  - <<: *b\n    subject: x\n", 3, "merge keys"),
    ("unknown-expectation", "expect:\n  - mlp-peek: last_subject\nfacts:\n" + FACT, 2, "did you mean 'mlp-peak'?"),
    ("bad-comparison", "expect:\n  - te: at least 0.3\nfacts:\n" + FACT, 2, "cannot read the comparison 'at least 0.3'"),
]


@pytest.mark.parametrize("text, line, message", [c[1:] for c in BAD_FACTSETS], ids=[c[0] for c in BAD_FACTSETS])
def test_a_bad_fact_set_is_one_located_collection_error(fl, text, line, message):
    fl.factset("bad", text)
    result = fl.run("--fl-json", "results.json", "--fl-html", "report.html")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # 2: a collection error (the other sets still run)
    out = result.stdout.str()
    assert_one_clean_line(out, f"factsets/bad.yaml:{line}: ", message)
    errors = [ln for ln in out.splitlines() if ln.startswith("factsets/bad.yaml:")]
    assert len(errors) == 1, out  # one line, no traceback
    assert fl.traced() == []  # nothing was traced, no model was needed
    assert_no_partial_files(fl.path)


def test_a_file_that_is_not_utf8_names_the_line(fl):
    fl.factset("bad", b"facts:\n  - subject: caf\xe9\n")
    result = fl.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert_one_clean_line(result.stdout.str(), "factsets/bad.yaml:2: the file is not UTF-8 text")


def test_a_broken_set_does_not_stop_the_good_one(fl):
    fl.factset("bad", "facts: [\n")
    fl.factset("good", "unknown: trace\nfacts:\n" + FACT)
    result = fl.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(passed=1, errors=1)


def test_a_huge_fact_set_loads_fast_and_collects(fl):
    from fact_locator.factset import load_factset

    body = "".join(f'  - id: f{i}\n    subject: "Subject number {i}"\n    relation: "{{}} is located in"\n    target: Italy\n'
                   for i in range(5000))
    path = fl.factset("huge", "unknown: trace\nfacts:\n" + body)
    started = time.perf_counter()
    fs = load_factset(path)
    elapsed = time.perf_counter() - started
    assert len(fs.facts) == 5000 and fs.facts[-1].line == 3 + 4 * 4999
    assert elapsed < 20, f"5000 facts took {elapsed:.1f} s to load"
    result = fl.run("--collect-only", "-q")
    assert result.ret == 0
    assert "5000 tests collected" in result.stdout.str()


def test_a_python_model_named_in_a_fact_set_is_refused(fl):
    """`settings: model: python:...` in a data file would import code: only --fl-model / ini may."""
    fl.pytester.makeini("[pytest]\nfl_samples = 2\n")  # the model comes from the default: a set could name one
    fl.factset("bad", "settings:\n  model: python:os:getcwd\nfacts:\n" + FACT)
    result = fl.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # its items fail; the file itself loads
    assert_one_clean_line(result.stdout.str(), "a python: model may only be given with --fl-model or the ini file")
