"""Which YAML files are fact sets, wherever pytest is started from (docs/plugin.md, "Which
files are fact sets"): a YAML file named on the command line always is; inside folders, the
files that `fl_factsets` globs match, resolved against the ini file's folder (or the
invocation folder), never against a rootdir that moves with the arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.pytester_harness import GEO

BROKEN = """\
name: broken
facts:
  - subject: Paris
    relation: "{} is the capital of"
    target: France
    traget: oops
"""

# Without an ini file the model and samples come from the command line.
TINY = ("--fl-model=python:fl_tiny:llama", "--fl-samples=2")
GEO_ITEMS = ["geo.yaml::colosseum::te", "geo.yaml::colosseum::hidden-peak", "geo.yaml::toyota::te",
             "geo.yaml::aggregate::ate"]


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line and " " not in line]


@pytest.fixture
def no_ini(fl):
    """A new user's folder: no ini file, so pytest picks the rootdir from the arguments."""
    (fl.pytester.path / "tox.ini").unlink()
    return fl


def test_a_fact_set_outside_the_glob_named_by_relative_path_is_collected_and_traced(no_ini):
    (no_ini.pytester.path / "geo.yaml").write_text(GEO)
    result = no_ini.run("geo.yaml", *TINY, "--collect-only", "-q")
    assert collected(result) == GEO_ITEMS
    result = no_ini.run("geo.yaml", *TINY)
    result.assert_outcomes(passed=3, xfailed=1)
    assert result.ret == 0


def test_named_by_absolute_path_from_another_working_folder(no_ini, monkeypatch):
    sets = no_ini.pytester.mkdir("sets")
    (sets / "geo.yaml").write_text(GEO)
    elsewhere = no_ini.pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = no_ini.run(str(sets / "geo.yaml"), *TINY, "--collect-only", "-q")
    assert [line.rsplit("/", 1)[-1] for line in collected(result)] == GEO_ITEMS


def test_path_options_that_move_the_rootdir_do_not_lose_the_fact_set(no_ini, tmp_path_factory):
    """`--fl-cache-dir DIR` as two arguments: pytest counts DIR when it picks the rootdir
    (the common ancestor), before the plugin's options are known."""
    (no_ini.pytester.path / "geo.yaml").write_text(GEO)
    cache = tmp_path_factory.mktemp("somewhere-else") / "cache"
    cache.mkdir()
    named = no_ini.run("geo.yaml", *TINY, "--fl-cache-dir", str(cache))
    named.assert_outcomes(passed=3, xfailed=1)
    assert (cache / "traces").is_dir()
    globbed = no_ini.run("--fl-factsets", "*.yaml", *TINY, "--fl-cache-dir", str(cache), "--collect-only", "-q")
    assert [line.rsplit("/", 1)[-1] for line in collected(globbed)] == GEO_ITEMS


def test_default_glob_is_resolved_against_the_invocation_folder_without_an_ini_file(no_ini, tmp_path_factory):
    no_ini.factset("geo", GEO)
    cache = tmp_path_factory.mktemp("elsewhere") / "cache"
    cache.mkdir()
    result = no_ini.run(*TINY, "--fl-cache-dir", str(cache), "--collect-only", "-q")
    assert [line.rsplit("/", 1)[-1] for line in collected(result)] == GEO_ITEMS


def test_a_folder_argument_collects_the_fact_sets_the_globs_match(fl, monkeypatch):
    fl.ini(fl_factsets="audits/facts/*.yaml")
    facts = fl.pytester.mkdir("audits") / "facts"
    facts.mkdir()
    (facts / "geo.yaml").write_text(GEO)
    (fl.pytester.path / "audits" / "ci-config.yaml").write_text("jobs: [build]\n")  # no glob matches it
    result = fl.run("audits", "--collect-only", "-q")
    assert collected(result) == [f"audits/facts/{item}" for item in GEO_ITEMS]
    assert result.ret == 0
    # The ini's globs start at the ini file's folder, from any working folder.
    monkeypatch.chdir(facts)
    result = fl.run(".", "--collect-only", "-q")
    assert collected(result) == [f"audits/facts/{item}" for item in GEO_ITEMS]


def test_a_yaml_named_explicitly_that_is_not_a_fact_set_is_a_collection_error_naming_the_file(fl):
    fl.factset("geo", GEO)
    (fl.pytester.path / "config.yaml").write_text("jobs:\n  - build\n")
    result = fl.run("config.yaml", "factsets")
    result.stdout.fnmatch_lines([
        "*ERROR collecting config.yaml*",
        "config.yaml:1: not a fact set: it has no 'facts:' list (a fact set is a mapping with 'facts:'*"
        "this file has 'jobs')",
    ])
    assert "Traceback" not in result.stdout.str()
    result.assert_outcomes(passed=3, xfailed=1, errors=1)
    assert result.ret == 2


def test_a_broken_and_a_good_fact_set_exit_2_and_the_good_one_is_traced(fl):
    fl.factset("geo", GEO)
    fl.factset("broken", BROKEN)
    result = fl.run("--fl-json", "results.json")
    result.stdout.fnmatch_lines([
        "*ERROR collecting factsets/broken.yaml*",
        "factsets/broken.yaml:6: unknown key 'traget' in the fact; did you mean 'target'?*",
    ])
    result.assert_outcomes(passed=3, xfailed=1, errors=1)
    assert result.ret == 2
    (geo,) = fl.results()["factsets"]
    assert geo["path"] == "factsets/geo.yaml"
    assert [(f["id"], f["status"]) for f in geo["facts"]] == [("colosseum", "traced"), ("toyota", "traced")]
    assert all(f["trace"]["te"] is not None for f in geo["facts"])


def test_a_broken_fact_set_exits_2_under_xdist_too(fl):
    fl.factset("geo", GEO)
    fl.factset("broken", BROKEN)
    result = fl.run_subprocess("-n", "2", "--dist", "loadfile", "--fl-json", "results.json")
    result.stdout.fnmatch_lines(["*factsets/broken.yaml:6: unknown key 'traget'*"])
    result.assert_outcomes(passed=3, xfailed=1, errors=1)
    assert result.ret == 2
    assert [f["status"] for f in fl.results()["factsets"][0]["facts"]] == ["traced", "traced"]
