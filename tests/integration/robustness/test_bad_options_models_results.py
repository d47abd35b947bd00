"""Bad options, bad models and bad results files, through the CLI (exit code 2, one line
`fact-locator: error: ...` on stderr) and through pytest (`--fl-*` / ini: usage error, exit
code 4, one `ERROR:` line). No traceback, and no half-written file is left behind.
The tables below are docs/robustness.md's option, model and results tables."""

from __future__ import annotations

import json

import pytest

from tests.integration.robustness.clean_failure import assert_no_partial_files, assert_one_clean_line
from fact_locator.cli import main

TRACE = ["trace", "--subject", "The Colosseum", "--relation", "{} is located in the country of", "--target", "Italy",
         "--no-progress", "--samples", "2", "--device", "cpu"]
GEO = 'unknown: trace\nfacts:\n  - id: colosseum\n    subject: The Colosseum\n    relation: "{} is located in the country of"\n    target: Italy\n'


def run_cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# -- options ------------------------------------------------------------------------------------
# (case id, CLI args, message part)
CLI_OPTIONS = [
    ("samples-negative", ["--samples", "-3"], "argument --samples: -3 is too small: give an integer >= 1"),
    ("samples-zero", ["--samples", "0"], "argument --samples: 0 is too small: give an integer >= 1"),
    ("samples-word", ["--samples", "ten"], "argument --samples: 'ten' is not an integer"),
    ("unknown-kind", ["--kinds", "mlp,heads"], "unknown kind 'heads'"),
    ("no-kinds", ["--kinds", ","], "no kinds given"),
    ("window-zero", ["--window", "0"], "argument --window: 0 is too small: give an integer >= 1"),
    ("seed-negative", ["--seed", "-1"], "argument --seed: -1 is too small: give an integer >= 0"),
    ("noise-negative", ["--noise", "-1"], "noise std must be a positive finite number, got '-1'"),
    ("noise-nan", ["--noise", "nan"], "noise std must be a positive finite number, got 'nan'"),
    ("unknown-device", ["--device", "tpu"], "unknown device 'tpu'"),
    ("unknown-dtype", ["--dtype", "float64"], "argument --dtype: unknown dtype 'float64'"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in CLI_OPTIONS], ids=[c[0] for c in CLI_OPTIONS])
def test_cli_bad_option_is_one_line_exit_2(args, message, model_dirs, capsys, tmp_path):
    out_json = tmp_path / "trace.json"
    code, out, err = run_cli([*TRACE, "--model", model_dirs["good"], *args, "--json", out_json], capsys)
    assert code == 2
    assert_one_clean_line(err, message)
    assert len(err.strip().splitlines()) == 1
    assert not out_json.exists()


@pytest.mark.skipif("cuda_available()")
def test_cli_cuda_without_a_gpu_is_one_line(model_dirs, capsys):
    code, out, err = run_cli([*TRACE[:-2], "--device", "cuda", "--model", model_dirs["good"]], capsys)
    assert code == 2
    assert_one_clean_line(err, "no CUDA GPU is available")


@pytest.mark.parametrize("where", ["directory", "missing-parent-is-a-file"])
def test_cli_json_output_that_cannot_be_written_is_one_line(where, model_dirs, capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    target = tmp_path if where == "directory" else tmp_path / "a-file" / "trace.json"
    code, out, err = run_cli([*TRACE, "--model", model_dirs["good"], "--window", "2", "--json", target], capsys)
    assert code == 2
    assert_one_clean_line(err, f"--json {target}")
    assert_no_partial_files(tmp_path)


def test_a_window_larger_than_the_model_is_clipped_to_its_layers(model_dirs, capsys, tmp_path):
    """Documented clipping (docs/robustness.md): restored layers are
    range(max(0, l - w//2), min(L, l + w - w//2)); a window >= 2L restores every layer."""
    traces = {}
    for window in (4, 1000):
        path = tmp_path / f"w{window}.json"
        code, out, err = run_cli([*TRACE, "--model", model_dirs["good"], "--kinds", "mlp,attn", "--window", window,
                                  "--json", path], capsys)
        assert code == 0, err
        traces[window] = json.loads(path.read_text())
    assert traces[1000]["settings"]["window"] == 1000  # recorded as asked
    assert traces[1000]["ie"] == traces[4]["ie"]  # the tiny model has 2 layers: both restore all of them


# (case id, pytest args or ini, message part)
PYTEST_OPTIONS = [
    ("samples-negative", ["--fl-samples", "-1"], "argument --fl-samples: -1 is too small: give an integer >= 1"),
    ("samples-word", ["--fl-samples", "ten"], "argument --fl-samples: 'ten' is not an integer"),
    ("unknown-kind", ["--fl-kinds", "heads"], "argument --fl-kinds: unknown kind 'heads'"),
    ("window-zero", ["--fl-window", "0"], "argument --fl-window: 0 is too small"),
    ("seed-negative", ["--fl-seed", "-1"], "argument --fl-seed: -1 is too small"),
    ("noise-negative", ["--fl-noise", "-1"], "argument --fl-noise: noise std must be a positive finite number"),
    ("unknown-device", ["--fl-device", "tpu"], "argument --fl-device: unknown device 'tpu'"),
    ("unknown-dtype", ["--fl-dtype", "float64"], "argument --fl-dtype: unknown dtype 'float64'"),
    ("unknown-rule", ["--fl-unknown", "ignore"], "argument --fl-unknown: unknown rule 'ignore'"),
    ("model-path-missing", ["--fl-model=./no/such/model"], "argument --fl-model: model path not found: ./no/such/model"),
    ("unknown-model", ["--fl-model", "gpt-17"], "argument --fl-model: unknown model 'gpt-17'"),
    ("python-model-bad-form", ["--fl-model", "python:onlymodule"], "write a custom model as python:module:function"),
    ("ini-samples-word", ["-o", "fl_samples=ten"], "ini value fl_samples = 'ten': 'ten' is not an integer"),
    ("ini-kinds", ["-o", "fl_kinds=ffn"], "ini value fl_kinds = 'ffn': unknown kind 'ffn'"),
    ("ini-device", ["-o", "fl_device=tpu"], "ini value fl_device = 'tpu': unknown device 'tpu'"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in PYTEST_OPTIONS], ids=[c[0] for c in PYTEST_OPTIONS])
def test_pytest_bad_option_is_a_usage_error(fl, args, message):
    fl.factset("geo", GEO)
    result = fl.run(*args, "--fl-json", "results.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # 4
    assert_one_clean_line(result.stdout.str() + result.stderr.str(), message)
    assert fl.traced() == []
    assert not (fl.path / "results.json").exists()


# -- models -------------------------------------------------------------------------------------
# (case id, model_dirs key, message part); the CLI and pytest give the same reason
BAD_MODELS = [
    ("missing-dir", "missing", "model path not found"),
    ("dir-without-config", "no-config", "has no config.json"),
    ("truncated-safetensors", "truncated", "a *.safetensors file is truncated or corrupt"),
    ("dir-without-tokenizer", "no-tokenizer", "cannot load model"),
    ("pickle-only", "pickle-only", "weights only in pickle files (pytorch_model.bin); fact-locator never unpickles weights"),
    ("garbage-gguf", "garbage.gguf", "does not start with the GGUF magic bytes"),
    ("zeroed-gguf", "zeros.gguf", "could not load"),
    ("gguf-unsupported-arch", "foo-arch.gguf", "GGUF model with architecture foo is not supported"),
    ("plain-file", "weights.txt", "is a file but not a .gguf"),
]


@pytest.mark.parametrize("key, message", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_cli_bad_model_is_one_line_exit_2(key, message, model_dirs, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FACT_LOCATOR_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli([*TRACE, "--model", model_dirs[key], "--json", tmp_path / "t.json"], capsys)
    assert code == 2
    # A spec that cannot name a model is refused while parsing (`argument --model: ...`), like
    # pytest's --fl-model; one that names a model that fails to load, when it loads.
    assert err.startswith(("fact-locator: error: ", "fact-locator trace: error: argument --model: ")), err
    assert_one_clean_line(err, message)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()
    converted = tmp_path / "cache" / "models"
    if converted.exists():  # a failed GGUF conversion leaves no half-converted model folder
        assert [p.name for p in converted.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("key, message", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_pytest_bad_model_is_a_usage_error(fl, key, message, model_dirs):
    fl.factset("geo", GEO)
    result = fl.run(f"--fl-model={model_dirs[key]}", "--fl-json", "results.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # 4, before any audit runs
    text = result.stdout.str() + result.stderr.str()
    assert_one_clean_line(text, message)
    assert fl.traced() == []
    assert_no_partial_files(fl.path)


@pytest.mark.parametrize("spec, message", [
    ("python:no_such_module:load", "cannot import module 'no_such_module'"),
    ("python:fl_tiny:broken", "broken() raised RuntimeError: no weights here"),
    ("python:fl_tiny:not_a_model", "not_a_model() returned int, not a LoadedModel"),
], ids=["python-model-missing-module", "python-model-raises", "python-model-wrong-type"])
def test_pytest_bad_python_model_is_a_usage_error(fl, spec, message):
    fl.factset("geo", GEO)
    result = fl.run("--fl-model", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert_one_clean_line(result.stdout.str() + result.stderr.str(), f"--fl-model {spec!r}", message)


def test_pytest_unsupported_architecture_is_a_usage_error(fl, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.support.tiny_models import tiny_tokenizer

    folder = tmp_path / "bloom"
    config = AutoConfig.for_model("bloom", vocab_size=len(tiny_tokenizer()), hidden_size=32, n_layer=1, n_head=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    fl.factset("geo", GEO)
    result = fl.run(f"--fl-model={folder}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert_one_clean_line(result.stdout.str() + result.stderr.str(), "unsupported architecture BloomForCausalLM")


# -- results files ------------------------------------------------------------------------------
def _results_text(kind: str, good: str) -> str | None:
    data = json.loads(good)
    return {
        "truncated": good[: len(good) // 2],
        "empty": "",
        "other-version": json.dumps({**data, "version": 2}),
        "not-results": json.dumps({"hello": "world"}),
        "a-list": "[1, 2, 3]",
        "malformed-factsets": json.dumps({**data, "factsets": 5}),
        "malformed-trace": json.dumps({**data, "factsets": [{**data["factsets"][0], "facts": [{"id": "x"}]}]}),
        "missing": None,
    }[kind]


# (case id, message part)
BAD_RESULTS = [
    ("truncated", "truncated or invalid JSON (line"),
    ("empty", "truncated or invalid JSON (line 1, column 1"),
    ("other-version", "results schema version 2, this fact-locator reads version 1"),
    ("not-results", "not a fact-locator results file"),
    ("a-list", "not a fact-locator results file"),
    ("malformed-factsets", "malformed results"),
    ("malformed-trace", "malformed results"),
    ("missing", "results file not found"),
]


@pytest.fixture(scope="module")
def good_results(tmp_path_factory) -> str:
    from fact_locator.results import FactResult, FactSetResult, RunResults
    from tests.support.trace_factory import make_trace

    trace = make_trace()
    results = RunResults(model={"name": "tiny"}, settings={}, versions={}, started_at="2026-01-01T00:00:00+00:00",
                         finished_at="2026-01-01T00:00:01+00:00",
                         factsets=[FactSetResult("geo", "factsets/geo.yaml", facts=[
                             FactResult("colosseum", "The Colosseum", "{} is located in the country of", "Italy", trace=trace)])])
    return json.dumps(results.to_dict())


@pytest.mark.parametrize("kind, message", BAD_RESULTS, ids=[c[0] for c in BAD_RESULTS])
def test_report_on_a_bad_results_file_is_one_line_exit_2(kind, message, good_results, tmp_path, capsys):
    path = tmp_path / "results.json"
    text = _results_text(kind, good_results)
    if text is not None:
        path.write_text(text)
    out_html = tmp_path / "report.html"
    code, out, err = run_cli(["report", path, "-o", out_html], capsys)
    assert code == 2
    assert_one_clean_line(err, f"fact-locator: error: {path}: ", message)
    assert len(err.strip().splitlines()) == 1
    assert not out_html.exists()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("where", ["directory", "parent-is-a-file"])
def test_report_output_that_cannot_be_written_is_one_line(where, good_results, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(good_results)
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "out" if where == "directory" else tmp_path / "a-file" / "report.html"
    if where == "directory":
        out.mkdir()
    code, _, err = run_cli(["report", path, "-o", out], capsys)
    assert code == 2
    assert_one_clean_line(err, f"-o {out}")
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_report_of_good_results_works(good_results, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(good_results)
    code, out, err = run_cli(["report", path, "-o", tmp_path / "r.html"], capsys)
    assert code == 0, err
    assert_no_partial_files(tmp_path)


def test_pytest_results_output_that_cannot_be_written_is_a_warning(fl):
    """--fl-json into a directory: the run is not lost, the write is a one-line warning."""
    fl.factset("geo", GEO)
    (fl.path / "out").mkdir()
    result = fl.run("--fl-json=out")
    assert result.ret == 0
    assert_one_clean_line(result.stdout.str(), "fact-locator: cannot write")
    assert_no_partial_files(fl.path)
