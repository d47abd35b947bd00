"""The noise-scale sweep: cheap corrupted runs only, consistent with full traces.
(The `sweep` command: tests/integration/test_sweep_and_severed_commands.py.)"""

import pytest

from fact_locator.facts import Fact
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.sweep import noise_sweep
from fact_locator.tracing.trace import NoiseInfo
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import tiny_loaded

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
