"""`--fl-samples auto` through the plugin: the ini and a fact set's `samples: auto`, rounds of 8
up to `--fl-max-samples`, a rerun that reads the extended traces from the cache, and the errors
of bad values."""

from __future__ import annotations

import pytest

NO_FACT_EXPECTATIONS = """\
name: bare
unknown: trace
settings:
  kinds: [hidden]
  window: 2
aggregate:
  - ate: ">= -1"
facts:
  - {id: colosseum, subject: The Colosseum, relation: "{} is located in the country of", target: Italy}
  - {id: toyota, subject: Toyota, relation: "{} was founded in the country of", target: Japan}
"""


def _draws(data: dict) -> dict[str, int]:
    return {f["id"]: f["trace"]["settings"]["samples"] for fs in data["factsets"] for f in fs["facts"]}


def test_auto_runs_rounds_up_to_max_samples_and_a_rerun_reads_them_from_the_cache(fl):
    fl.factset("bare", NO_FACT_EXPECTATIONS)
    result = fl.run("--fl-samples", "auto", "--fl-max-samples", "16", "--fl-json", "results.json")
    result.assert_outcomes(passed=3)
    first = _draws(fl.results())
    assert set(first.values()) <= {8, 16}  # settled at 8, or stopped at the maximum
    rerun = fl.run("--fl-samples", "auto", "--fl-max-samples", "16", "--fl-json", "results.json")
    rerun.assert_outcomes(passed=3)
    assert _draws(fl.results()) == first
    assert fl.results()["settings"]["stats"]["traced"] == 0  # no draw recomputed
    rerun.stdout.fnmatch_lines(["fact-locator: 0 facts traced, 2 from the cache*"])


def test_a_fact_sets_samples_auto_and_the_ini_max(fl):
    fl.ini(fl_samples="", fl_max_samples="8")  # no session samples: the fact set's auto holds
    fl.factset("bare", NO_FACT_EXPECTATIONS.replace("  window: 2\n", "  window: 2\n  samples: auto\n"))
    fl.run("--fl-json", "results.json").assert_outcomes(passed=3)
    assert set(_draws(fl.results()).values()) == {8}


def test_bad_samples_and_max_samples_are_one_line(fl):
    result = fl.run("--fl-samples", "lots")
    result.stderr.fnmatch_lines(["*argument --fl-samples: 'lots' is not an integer or 'auto' (a number of noise samples >= 1, or adaptive rounds)*"])
    result = fl.run("--fl-max-samples", "4")
    result.stderr.fnmatch_lines(["*argument --fl-max-samples: 4 is too small: give an integer >= 8*"])
    fl.factset("bare", NO_FACT_EXPECTATIONS.replace("  window: 2\n", "  window: 2\n  samples: lots\n"))
    result = fl.run()
    result.stdout.fnmatch_lines(["*bare.yaml:6*settings.samples*"])


def test_the_header_shows_auto_with_its_rounds_and_level_and_a_target_metric_other_than_first(fl):
    fl.factset("bare", NO_FACT_EXPECTATIONS)
    result = fl.run("--fl-samples", "auto", "--fl-max-samples", "32", "--fl-confidence", "0.9", "--co")
    result.stdout.fnmatch_lines(["fact-locator: *samples=auto (8..32, 90%; cli), seed=0*"])
    result.stdout.no_fnmatch_line("*target-metric=*")  # the default (first) is not worth a word
    result = fl.run("--fl-target-metric", "full", "--co")
    result.stdout.fnmatch_lines(["fact-locator: *samples=2 (ini)*, metric=prob, target-metric=full (cli), method=exact*"])


def test_a_sets_open_facts_are_extended_together_when_its_first_item_runs(fl, monkeypatch):
    """Thresholds at each fact's TE after the first round (8 draws: the same draws a fixed
    run of 8 takes) leave both facts open: the first item runs the rounds of both, each
    round one extension of both facts (shared forwards), and the second item finds its
    trace ready."""
    from fact_locator.adaptive_samples import samples_of
    from fact_locator.tracing.tracer import Tracer

    fl.factset("bare", NO_FACT_EXPECTATIONS)
    fl.run("--fl-samples", "8", "--fl-json", "results.json").assert_outcomes(passed=3)
    te = {f["id"]: f["trace"]["te"] for fs in fl.results()["factsets"] for f in fs["facts"]}
    fl.factset("bare", NO_FACT_EXPECTATIONS.replace("aggregate:\n  - ate: \">= -1\"\n", "").replace(
        "target: Italy}", f"target: Italy, expect: [te: \">= {te['colosseum']:.6f}\"]}}").replace(
        "target: Japan}", f"target: Japan, expect: [te: \">= {te['toyota']:.6f}\"]}}"))
    extended: list[list[str]] = []
    extend_many = Tracer.extend_many

    def recording(self, items, samples, *args, **kwargs):
        extended.append([fact.id for fact, trace in items if samples_of(trace) < samples])
        return extend_many(self, items, samples, *args, **kwargs)

    monkeypatch.setattr(Tracer, "extend_many", recording)
    result = fl.run("--fl-samples", "auto", "--fl-max-samples", "16", "--fl-undecided", "skip")
    assert sum(result.parseoutcomes().get(k, 0) for k in ("passed", "failed", "skipped")) == 2
    assert extended and extended[0] == ["colosseum", "toyota"]
    assert all(len(ids) == 2 for ids in extended)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dist", ["load", "loadfile"])
def test_under_xdist_each_fact_gets_the_draws_and_outcomes_of_one_process(fl, dist):
    """Under pytest-xdist, a set's items spread over the workers (`load`: each worker runs the
    rounds of its own facts) or kept on one (`loadfile`: together), every fact stops at the
    round it stops at in one process: the same draws, the same outcomes."""
    pytest.importorskip("xdist")
    # colosseum's own expectation is decided at once; toyota (none) is never settled on a random model
    fl.factset("bare", NO_FACT_EXPECTATIONS.replace("target: Italy}", 'target: Italy, expect: [te: ">= -1"]}'))
    fl.run("--fl-samples", "auto", "--fl-max-samples", "16", "--fl-no-cache",
           "--fl-json", "one.json").assert_outcomes(passed=3)
    result = fl.run_subprocess("-n", "2", "--dist", dist, "--fl-samples", "auto", "--fl-max-samples", "16",
                               "--fl-no-cache", "--fl-json", "workers.json", timeout=240)
    result.assert_outcomes(passed=3)
    one, workers = fl.results("one.json"), fl.results("workers.json")
    assert _draws(workers) == _draws(one)
    assert _draws(one) == {"colosseum": 8, "toyota": 16}
    assert {f["id"]: f["trace"]["te"] for fs in workers["factsets"] for f in fs["facts"]} == pytest.approx(
        {f["id"]: f["trace"]["te"] for fs in one["factsets"] for f in fs["facts"]}, rel=1e-5)
