"""Options: --help, parsers, ini, precedence (cli > ini > fact set > default), the header,
model errors, and that importing the plugin stays light."""

from __future__ import annotations

import subprocess
import sys

from tests.support.pytester_harness import GEO

OPTIONS = ["model", "device", "dtype", "samples", "seed", "window", "noise", "kinds", "cache-dir", "no-cache",
           "json", "html", "factsets", "unknown"]


def test_help_lists_every_option(fl):
    result = fl.run("--help")
    result.stdout.fnmatch_lines(["fact-locator: causal-tracing audits*"])
    for name in OPTIONS:
        result.stdout.fnmatch_lines([f"*--fl-{name}*"])
        result.stdout.fnmatch_lines([f"*fl_{name.replace('-', '_')} (string):*"])


def test_importing_the_plugin_does_not_import_torch():
    code = ("import sys, fact_locator.plugin, fact_locator.plugin.fixtures, fact_locator.locator; "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bad_values_fail_before_collection(fl):
    result = fl.run("--fl-samples", "0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*argument --fl-samples: 0 is too small: give an integer >= 1*"])
    result = fl.run("--fl-device", "gpu")
    result.stderr.fnmatch_lines(["*--fl-device: unknown device 'gpu'*"])
    result = fl.run("--fl-kinds", "mlp,resid")
    result.stderr.fnmatch_lines(["*--fl-kinds: unknown kind 'resid'*"])
    result = fl.run("--fl-model", "no-such-model")
    result.stderr.fnmatch_lines(["*--fl-model: unknown model 'no-such-model'*"])


def test_bad_ini_value_is_a_usage_error(fl):
    fl.ini(fl_window="wide")
    result = fl.run()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*fact-locator: ini value fl_window = 'wide': 'wide' is not an integer*"])


def test_model_that_fails_to_load_is_one_usage_error(fl):
    fl.factset("geo", GEO)
    result = fl.run("--fl-model", "python:fl_tiny:broken")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*fact-locator: --fl-model 'python:fl_tiny:broken'*broken() raised RuntimeError: no weights here*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result = fl.run("--fl-model", "python:fl_tiny:not_a_model")
    result.stderr.fnmatch_lines(["*returned int, not a LoadedModel*"])
    result = fl.run("--fl-model", "python:no_such_module:f")
    result.stderr.fnmatch_lines(["*cannot import module 'no_such_module'*"])


SAMPLES3 = GEO.replace("unknown: trace\n", "unknown: trace\nsettings:\n  samples: 3\n  window: 4\n")


def _set_settings(fl, **run_args):
    data = fl.results()
    per_set = data["settings"]["factset_settings"]["factsets/geo.yaml"]
    trace = data["factsets"][0]["facts"][0]["trace"]
    return data, per_set, trace


def test_precedence_cli_over_ini_over_factset_over_default(fl):
    fl.factset("geo", SAMPLES3)
    fl.ini(fl_samples=4)
    # ini (4) beats the fact set (3); the fact set's window (4) beats the default (10)
    result = fl.run("--fl-json", "results.json", "-k", "toyota")
    result.stdout.fnmatch_lines(["fact-locator: model=python:fl_tiny:llama (ini), *samples=4 (ini), seed=0, window=10*"])
    data, per_set, trace = _set_settings(fl)
    assert (per_set["samples"], per_set["sources"]["samples"]) == (4, "ini")
    assert (per_set["window"], per_set["sources"]["window"]) == (4, "factset")
    assert data["settings"]["samples"] == 4 and data["settings"]["sources"]["samples"] == "ini"
    # the command line beats the ini
    result = fl.run("--fl-json", "results.json", "--fl-samples", "5", "--fl-window", "2", "-k", "toyota")
    result.stdout.fnmatch_lines(["*samples=5 (cli), seed=0, window=2 (cli)*"])
    data, per_set, _ = _set_settings(fl)
    assert (per_set["samples"], per_set["sources"]["samples"]) == (5, "cli")
    assert (per_set["window"], per_set["sources"]["window"]) == (2, "cli")
    traces = [f["trace"] for f in data["factsets"][0]["facts"] if f["trace"]]
    assert traces and all(t["settings"]["samples"] == 5 for t in traces)
    # no ini value: the fact set's 3; no fact-set value either: the default
    fl.pytester.makeini("[pytest]\nfl_model = python:fl_tiny:llama\n")
    fl.run("--fl-json", "results.json", "-k", "toyota")
    _, per_set, _ = _set_settings(fl)
    assert (per_set["samples"], per_set["sources"]["samples"]) == (3, "factset")
    assert (per_set["seed"], per_set["sources"]["seed"]) == (0, "default")


def test_noise_is_calibrated_once_per_fact_set_or_given(fl):
    fl.factset("geo", GEO)
    fl.run("--fl-json", "results.json", "--fl-noise-calibration", "factset")
    data = fl.results()
    per_set = data["settings"]["factset_settings"]["factsets/geo.yaml"]
    stds = {f["trace"]["noise"]["std"] for f in data["factsets"][0]["facts"]}
    assert stds == {per_set["noise_std"]}
    assert "3 x std of subject-token embeddings (2 facts of fact set 'geo')" in per_set["noise_calibration"]
    fl.run("--fl-json", "results.json", "--fl-noise", "0.5")
    data = fl.results()
    assert {f["trace"]["noise"]["std"] for f in data["factsets"][0]["facts"]} == {0.5}
    assert data["settings"]["sources"]["noise"] == "cli"


def test_each_xdist_worker_gets_its_share_of_the_cores(monkeypatch):
    import os

    from fact_locator.plugin import share_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    share_cpu_threads({"workercount": 2})
    assert os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    share_cpu_threads({"workercount": 8})
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    share_cpu_threads(None)  # not a worker: torch keeps its default
    assert "OMP_NUM_THREADS" not in os.environ
