"""The position-0 control (issue 23): the control fact sets are the audited ones with words
before the subject, and `factsets/position0_control.py` measures what the reference loop does at
the sites it restores."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fact_locator.factset import load_factset
from fact_locator.facts import Fact
from fact_locator.tracing.reference import reference_trace
from tests.support.tiny_models import tiny_loaded

FACTSETS = Path(__file__).resolve().parents[2] / "factsets"
PREFIX = "Here is a fact. "


def _script():
    spec = importlib.util.spec_from_file_location("position0_control", FACTSETS / "position0_control.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("position0_control", module)  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["landmarks", "cities"])
def test_the_control_is_the_same_facts_with_words_before_the_subject(name):
    original, control = load_factset(FACTSETS / f"{name}.yaml"), load_factset(FACTSETS / f"{name}_prefixed.yaml")
    assert [s.id for s in control.facts] == [s.id for s in original.facts]
    for before, after in zip(original.facts, control.facts):
        assert (after.fact.subject, after.fact.target) == (before.fact.subject, before.fact.target)
        assert after.fact.relation == PREFIX + before.fact.relation
        assert before.fact.subject_start == 0 and after.fact.subject_start == len(PREFIX)


def test_the_measurement_equals_the_reference_loop_at_its_sites():
    loaded = tiny_loaded("llama")
    fact = Fact("The Colosseum", PREFIX + "{} is located in the country of", "Italy")
    script = _script()
    p_clean, p_corrupt, curves = script.measure(loaded, fact, samples=3, noise_std=2.0, window=2, seed=0)
    ref = reference_trace(loaded, fact, ("hidden", "mlp", "attn"), 3, 2.0, 2, 0)
    start, end = ref["subject_range"]
    assert start > 0  # the noise is not on position 0
    last = len(ref["ie"]["hidden"][0]) - 1
    assert p_clean == pytest.approx(ref["p_clean"], abs=1e-6) and p_corrupt == pytest.approx(ref["p_corrupt"], abs=1e-6)
    for name, kind, where in script.CURVES:
        token = end - 1 if where == "subject" else last
        expected = [row[token] for row in ref["ie"][kind]]
        assert curves[name] == pytest.approx(expected, abs=1e-8), name
    assert max(abs(v) for v in curves["hidden @ last subject"]) > 1e-5  # the comparison means something


def test_layers_outside_the_chosen_range_are_not_measured():
    script = _script()
    fact = Fact("The Colosseum", PREFIX + "{} is located in the country of", "Italy")
    _, _, curves = script.measure(tiny_loaded("llama"), fact, 2, 0.5, 2, 0, script.CURVES[:1], range(1, 2))
    (curve,) = curves.values()
    assert [i for i, v in enumerate(curve) if v == v] == [1]  # NaN elsewhere
