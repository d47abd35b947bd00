"""Hand-built traces, and runs of one trace, for tests that need no model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fact_locator.models.identity import ModelIdentity
from fact_locator.results import FactResult, FactSetResult, RunResults
from fact_locator.tracing.trace import NoiseInfo, Trace


def make_trace(**overrides: Any) -> Trace:
    """A 2-layer, 5-token trace ('The Colosseum is in' -> ' Italy') with an MLP grid."""
    values: dict[str, Any] = dict(
        model=ModelIdentity("m", "LlamaForCausalLM", 2, "abc"),
        fact_id="f1", subject="The Colosseum", relation="{} is in", prompt="The Colosseum is in",
        tokens=("The", " Col", "osseum", " is", " in"), token_ids=(1, 2, 3, 4, 5), subject_range=(0, 3),
        target="Italy", target_token=" Italy", target_id=7, top_token=" Italy",
        p_clean=0.75, p_corrupt=0.05,
        ie={"mlp": ((0.1, 0.2, 0.35, 0.0, 0.01), (0.0, 0.1, 0.2, 0.05, 0.3000000000000001))},
        settings={"samples": 10, "window": 10, "seed": 0, "kinds": ["mlp"]},
        noise=NoiseInfo(0.123456789, "3 x std"), timings={"total": 1.5}, versions={"torch": "x"},
    )
    values.update(overrides)
    return Trace(**values)


def make_trace_with_draws(corrupt: Sequence[float], restored: Any, **overrides: Any) -> Trace:
    """`make_trace`'s trace (clean value 0.75) whose MLP noise draws are `restored` (an array
    (2 layers, 5 tokens, n)) and whose corrupted runs gave `corrupt` (n,); its p_corrupt and
    IE grid are the draws' means, as the tracer's are."""
    import numpy as np

    from fact_locator.tracing.extension import measured_fields
    from fact_locator.tracing.sample_effects import SampleEffects

    effects = SampleEffects.from_arrays(np.array(corrupt), np.array(corrupt), {"mlp": np.asarray(restored)})
    values: dict[str, Any] = dict(clean_value=0.75, settings={"samples": len(corrupt), "kinds": ["mlp"]})
    return make_trace(**(measured_fields(effects) | values | overrides))


def run_of(trace: Trace, name: str = "geo") -> RunResults:
    """A run of one fact set `name` holding one fact, `trace`."""
    fact = FactResult(id="f1", subject=trace.subject, relation=trace.relation, target=trace.target, trace=trace)
    return RunResults(model={}, settings={}, versions={}, started_at="", finished_at="",
                      factsets=[FactSetResult(name=name, path=f"{name}.yaml", facts=[fact])])
