"""The `sweep` command and `trace --severed`, on a tiny local model. (The sweep and severed
paths themselves: tests/unit/test_sweep.py, tests/unit/test_severed.py.)"""

import pytest

from fact_locator.cli import main
from fact_locator.settings import CACHE_ENV
from fact_locator.tracing.trace import Trace
from tests.support.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(autouse=True)
def _trace_cache_in_tmp(tmp_path, monkeypatch):
    """`fact-locator trace` writes the trace cache: here a temp folder, never the user's."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cli-cache"))


def test_the_sweep_command_prints_a_row_per_scale(tmp_path, capsys):
    tiny_model("llama").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    code = main(["sweep", "--model", str(tmp_path), "--subject", "Toyota", "--relation", "{} was founded in",
                 "--target", "Japan", "--scales", "1,3", "--samples", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "noise sweep" in out and "mean TE" in out


def test_the_sweep_command_needs_facts(capsys):
    assert main(["sweep", "--subject", "Toyota"]) == 2
    assert "sweep needs --factset FILE" in capsys.readouterr().err


def test_trace_severed_writes_the_curves_and_shares_into_the_trace_json(tiny_dir, tmp_path, capsys):
    out = tmp_path / "trace.json"
    code = main(["trace", "--subject", "The Colosseum", "--relation", "{} is located in the country of", "--target", "Italy",
                 "--model", str(tiny_dir), "--device", "cpu", "--no-progress", "--kinds", "hidden", "--samples", "2",
                 "--severed", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    trace = Trace.load(out)
    assert trace.severed is not None
    for kind in ("mlp", "attn"):
        assert f"share of the effect through {kind}: {trace.severed.shares[kind]:.1%}" in printed
        assert len(trace.severed.curves[kind]) == trace.n_layers
    assert trace.severed.token == trace.subject_range[1] - 1
    assert trace.severed.curves["hidden"][trace.severed.peak_layer] == trace.severed.peak_ie
