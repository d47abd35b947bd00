"""The noise-scale sweep: cheap corrupted runs only, consistent with full traces."""

import pytest

from fact_locator.cli import main
from fact_locator.facts import Fact
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.sweep import noise_sweep
from fact_locator.tracing.trace import NoiseInfo
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import tiny_loaded, tiny_model, tiny_tokenizer

FACTS = [Fact("The Colosseum", "{} is located in the country of", "Italy"), Fact("Toyota", "{} was founded in the country of", "Japan")]


def test_each_point_matches_the_corrupted_run_of_a_trace_with_that_noise():
    tracer = Tracer(tiny_loaded("gpt2"), TraceSettings(kinds="hidden", samples=3, window=2))
    points = noise_sweep(tracer, FACTS, scales=(1.0, 3.0))
    for point in points:
        traces = [tracer.trace(f, noise=NoiseInfo(point.noise_std, "sweep")) for f in FACTS]
        assert point.mean_p_corrupt == pytest.approx(sum(t.p_corrupt for t in traces) / 2, abs=1e-6)
        assert point.mean_te == pytest.approx(sum(t.te for t in traces) / 2, abs=1e-6)
    assert points[1].noise_std == pytest.approx(3 * points[0].noise_std)


def test_uniform_noise_has_the_same_scale_but_other_draws():
    tracer = Tracer(tiny_loaded("gpt2"), TraceSettings(samples=3))
    gaussian, uniform = noise_sweep(tracer, FACTS, (3.0,)), noise_sweep(tracer, FACTS, (3.0,), mode="uniform")
    assert gaussian[0].noise_std == uniform[0].noise_std
    assert gaussian[0].mean_p_corrupt != uniform[0].mean_p_corrupt


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
