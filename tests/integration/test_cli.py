"""The `fact-locator` command: a trace on a local model, through the Locator and its cache,
and one clear line for each bad input."""

import json
import subprocess
import sys

import pytest

from fact_locator.cli import main
from fact_locator.settings import CACHE_ENV
from tests.support.tiny_models import tiny_tokenizer

TRACE = ["trace", "--subject", "The Colosseum", "--relation", "{} is located in the country of", "--target", "Italy"]


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    """Traces of these tests go to a temp cache, never the user's."""
    root = tmp_path / "fl-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_prints_the_numbers_and_writes_the_documented_json(tiny_dir, tmp_path, capsys):
    out_json = tmp_path / "trace.json"
    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), "--samples", "2", "--window", "2",
                              "--device", "cpu", "--no-progress", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert "p_clean" in out and "TE" in out and "peak IE" in out
    data = json.loads(out_json.read_text())
    assert set(data["ie"]) == {"hidden", "mlp", "attn"}
    assert len(data["ie"]["mlp"]) == 2 and all(len(row) == len(data["tokens"]) for row in data["ie"]["mlp"])
    assert data["settings"]["samples"] == 2 and data["settings"]["window"] == 2
    assert data["te"] == pytest.approx(data["p_clean"] - data["p_corrupt"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "./missing/dir"], "model path not found"),
        (["--model", "/nowhere/model.gguf"], "model path not found"),
        (["--samples", "0"], "argument --samples: 0 is too small: give an integer >= 1"),
        (["--samples", "ten"], "argument --samples: 'ten' is not an integer"),
        (["--kinds", "mlp,heads"], "unknown kind 'heads'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cuda"], "no CUDA GPU is available"),
        (["--noise", "-1"], "noise std must be a positive finite number, got '-1'"),
    ],
)
def test_bad_options_get_one_line_and_exit_code_2(args, message, capsys):
    code, out, err = run_cli([*TRACE, *args, "--no-progress"], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "fact_args, message",
    [
        (["--subject", "Toyota", "--prompt", "Honda was founded in", "--target", "Japan"], "'Toyota' does not occur in the prompt"),
        (["--subject", "Toyota", "--relation", "{} was founded in {}", "--target", "Japan"], "has 2 '{}'"),
        (["--subject", "Toyota", "--relation", "was founded in", "--target", "Japan"], "has no '{}'"),
        (["--subject", "Toyota", "--relation", "{} was founded in", "--target", ""], "the target is empty"),
    ],
)
def test_bad_facts_get_one_line_and_exit_code_2(fact_args, message, tiny_dir, capsys):
    code, out, err = run_cli(["trace", *fact_args, "--model", str(tiny_dir), "--no-progress"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unsupported_architecture_is_one_line(tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("bloom", vocab_size=len(tiny_tokenizer()), hidden_size=32, n_layer=1, n_head=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    code, out, err = run_cli([*TRACE, "--model", str(tmp_path), "--no-progress"], capsys)
    assert code == 2
    assert "unsupported architecture BloomForCausalLM" in err and "LlamaForCausalLM" in err


def test_pickled_weights_are_refused_with_the_reason(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    code, out, err = run_cli([*TRACE, "--model", str(tmp_path), "--no-progress"], capsys)
    assert code == 2
    assert "never unpickles weights" in err and "pytorch_model.bin" in err


def test_the_installed_command_prints_no_traceback():
    result = subprocess.run([sys.executable, "-m", "fact_locator.cli", *TRACE, "--model", "nope"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fact-locator trace: error: argument --model: unknown model 'nope': built-in models are smollm2-135m, "
        "gemma3-270m; or give a local directory, a .gguf file or a hub id like org/name (see fact-locator trace --help)")


def test_models_lists_the_built_ins(tmp_path, capsys):
    code, out, err = run_cli(["models", "--cache-dir", str(tmp_path)], capsys)
    assert code == 0
    assert "smollm2-135m" in out and "gemma3-270m" in out


def test_trace_options_for_metrics_corruptions_atp_and_severed_paths(tiny_dir, tmp_path, capsys):
    out_json = tmp_path / "t.json"
    code, out, err = run_cli(["trace", "--subject", "Mount Fuji", "--relation", "{} is located in the country of",
                              "--target", "Japan", "--distractor", "Italy", "--metric", "logit_diff",
                              "--corruption", "str", "--replacement", "Mount Rome", "--replacement", "Toyota",
                              "--kinds", "hidden", "--window", "2", "--model", str(tiny_dir), "--device", "cpu",
                              "--no-progress", "--json", str(out_json)], capsys)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["metric"] == "logit_diff" and data["settings"]["corruption"] == "str"
    assert data["noise"]["calibration"] == "symmetric token replacement with 1 subject(s): Mount Rome"
    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), "--device", "cpu", "--no-progress", "--severed",
                              "--kinds", "hidden", "--samples", "2"], capsys)
    assert code == 0, err
    assert "share of the effect through mlp" in out and "share of the effect through attn" in out
    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), "--device", "cpu", "--method", "atp", "--no-progress"], capsys)
    assert code == 0 and "atp (approximate" in out


def test_unknown_metric_and_corruption_are_one_line(capsys):
    for args, message in ((["--metric", "rank"], "argument --metric: unknown metric 'rank'"),
                          (["--corruption", "blur"], "argument --corruption: unknown corruption 'blur'")):
        code, out, err = run_cli([*TRACE, *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# -- one tracing path: the command traces through the Locator and its cache --------------------
FAST = ["--samples", "2", "--window", "2", "--device", "cpu", "--no-progress"]


def _cache_files(root):
    return sorted((root / "traces").rglob("*.json"))


@pytest.fixture
def count_traces(monkeypatch):
    """How many times the tracer runs restorations (a cache hit runs none)."""
    from fact_locator.tracing.tracer import Tracer

    calls = []
    real = Tracer.trace_many

    def counting(self, facts, *args, **kwargs):
        calls.append([f.subject for f in facts])
        return real(self, facts, *args, **kwargs)

    monkeypatch.setattr(Tracer, "trace_many", counting)
    return calls


def test_the_trace_command_gives_the_locators_numbers(tiny_dir, tmp_path, capsys):
    from fact_locator.facts import Fact
    from fact_locator.locator import Locator
    from fact_locator.tracing.trace import Trace
    from fact_locator.tracing.tracer import Tracer

    out_json = tmp_path / "cli.json"
    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), *FAST, "--seed", "3", "--json", str(out_json)], capsys)
    assert code == 0, err
    locator = Locator(model=str(tiny_dir), device="cpu", overrides={"samples": 2, "window": 2, "seed": 3}, use_cache=False)
    direct = locator.trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))
    engine = Tracer(locator.load(), locator.settings_for()).trace(Fact("The Colosseum", "{} is located in the country of", "Italy"))
    cli = Trace.load(out_json)
    assert cli.noise == direct.noise == engine.noise  # the fact's own calibration, as before the Locator
    assert cli.ie == engine.ie
    assert cli.te == direct.te and cli.p_clean == direct.p_clean
    for kind in direct.kinds:
        assert cli.ie[kind] == direct.ie[kind], kind


def test_a_second_trace_of_the_same_fact_is_read_from_the_cache(tiny_dir, tmp_path, cache_root, count_traces, capsys):
    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), *FAST, "--json", str(tmp_path / "first.json")], capsys)
    assert code == 0, err
    assert "cached" not in out and len(count_traces) == 1
    [entry] = _cache_files(cache_root)
    written = entry.stat().st_mtime_ns

    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), *FAST, "--json", str(tmp_path / "second.json")], capsys)
    assert code == 0, err
    assert "cached: read from the trace cache" in out
    assert len(count_traces) == 1  # no restoration ran
    assert _cache_files(cache_root) == [entry] and entry.stat().st_mtime_ns == written
    assert (tmp_path / "first.json").read_text() == (tmp_path / "second.json").read_text()


def test_no_cache_traces_again_and_cache_dir_chooses_the_folder(tiny_dir, tmp_path, cache_root, count_traces, capsys):
    elsewhere = tmp_path / "elsewhere"
    for _ in range(2):
        code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), *FAST, "--cache-dir", str(elsewhere)], capsys)
        assert code == 0, err
    assert "cached" in out and len(count_traces) == 1
    assert len(_cache_files(elsewhere)) == 1 and _cache_files(cache_root) == []

    code, out, err = run_cli([*TRACE, "--model", str(tiny_dir), *FAST, "--cache-dir", str(elsewhere), "--no-cache"], capsys)
    assert code == 0, err
    assert "cached" not in out and len(count_traces) == 2


def test_a_python_model_traces_from_the_command_line(tmp_path, capsys):
    out_json = tmp_path / "t.json"
    code, out, err = run_cli([*TRACE, "--model", "python:tests.support.fl_tiny:llama", *FAST, "--kinds", "hidden",
                              "--json", str(out_json)], capsys)
    assert code == 0, err
    assert "p_clean" in out and json.loads(out_json.read_text())["settings"]["samples"] == 2


@pytest.mark.parametrize("spec, message", [
    ("python:tests.support.fl_tiny:broken", "broken() raised RuntimeError: no weights here"),
    ("python:tests.support.fl_tiny:not_a_model", "not_a_model() returned int, not a LoadedModel"),
    ("python:no_such_module_here:load", "cannot import module 'no_such_module_here'"),
    ("python:onlymodule", "write a custom model as python:module:function"),
])
def test_a_bad_python_model_is_one_line(spec, message, capsys):
    code, out, err = run_cli([*TRACE, "--model", spec, *FAST], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_empty_cache_dir_is_one_line(capsys):
    code, out, err = run_cli([*TRACE, "--cache-dir", " ", *FAST], capsys)
    assert code == 2
    assert "argument --cache-dir: the path is empty" in err and len(err.strip().splitlines()) == 1


def test_the_sweep_command_takes_a_python_model(capsys):
    code, out, err = run_cli(["sweep", "--model", "python:tests.support.fl_tiny:llama", "--subject", "Toyota",
                              "--relation", "{} was founded in", "--target", "Japan", "--scales", "1,3", "--samples", "2",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    assert "noise sweep on python:tests.support.fl_tiny:llama" in out


# A fact of the tiny llama whose TE is not 0 (the target is the word it finds likeliest).
AUTO = ["trace", "--subject", "The Colosseum", "--relation", "{} is located in the country of", "--target", "mother",
        "--model", "python:tests.support.fl_tiny:llama", "--device", "cpu", "--window", "2", "--kinds", "hidden",
        "--samples", "auto", "--no-progress"]


@pytest.fixture
def count_draws(monkeypatch):
    """Noise draws the tracer computes: [fresh, added by extensions]."""
    from fact_locator.adaptive_samples import samples_of
    from fact_locator.tracing.tracer import Tracer

    drawn = [0, 0]
    trace_many, extend_many = Tracer.trace_many, Tracer.extend_many

    def fresh(self, facts, *args, **kwargs):
        drawn[0] += self.settings.samples * len(facts)
        return trace_many(self, facts, *args, **kwargs)

    def extended(self, items, samples, *args, **kwargs):
        drawn[1] += sum(max(samples - samples_of(trace), 0) for _fact, trace in items)
        return extend_many(self, items, samples, *args, **kwargs)

    monkeypatch.setattr(Tracer, "trace_many", fresh)
    monkeypatch.setattr(Tracer, "extend_many", extended)
    return drawn


def test_trace_samples_auto_runs_rounds_until_te_and_peak_settle_and_says_why_it_stopped(tmp_path, count_draws, capsys):
    from fact_locator.adaptive_samples import looks, trace_settled
    from fact_locator.tracing.trace import Trace

    out_json = tmp_path / "auto.json"
    code, out, err = run_cli([*AUTO, "--json", str(out_json)], capsys)
    assert code == 0, err
    # 8 draws, then 16, then 32: settled there (default --confidence 0.95, --max-samples 64)
    assert "samples auto: settled at 95% after 32 samples" in out
    trace = Trace.load(out_json)
    assert trace.n_samples == 32 and trace_settled(trace, 0.95, looks(64))
    assert count_draws == [8, 24]
    # A rerun reads the 32 draws from the cache and computes none.
    code, out, err = run_cli([*AUTO], capsys)
    assert "samples auto: settled at 95% after 32 samples" in out and count_draws == [8, 24]
    # Capped at 16 draws it stops unsettled, and says so.
    code, out, err = run_cli([*AUTO, "--max-samples", "16", "--cache-dir", str(tmp_path / "other")], capsys)
    assert code == 0, err
    assert "samples auto: not settled at 95% after 16 samples, the maximum" in out


def test_trace_takes_confidence_and_sweep_refuses_samples_auto_in_one_line(capsys):
    code, out, err = run_cli([*AUTO, "--confidence", "1.5"], capsys)
    assert code == 2 and "argument --confidence: a confidence level is between 0 and 1 (e.g. 0.95), got '1.5'" in err
    code, out, err = run_cli(["sweep", "--model", "python:tests.support.fl_tiny:llama", "--subject", "Toyota",
                              "--relation", "{} was founded in", "--target", "Japan", "--samples", "auto",
                              "--device", "cpu"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "sweep --samples auto: a sweep decides no verdict for rounds to settle" in err
