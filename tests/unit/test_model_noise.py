"""One noise per model (`noise_calibration: model`, the default): noise_scale x the std of the
embedding-module outputs of the shipped reference subjects, each tokenized on its own, as
ROME's `collect_embedding_std`; measured once per model and kept in the cache folder."""

from __future__ import annotations

import numpy as np
import pytest

from fact_locator.factset import parse_factset
from fact_locator.locator import Locator
from fact_locator.tracing.reference_subjects import reference_subjects
from fact_locator.tracing.trace import NoiseInfo, Trace

MODEL = "python:tests.support.fl_tiny:llama"
LANDMARKS = """name: landmarks
settings: {samples: 2, kinds: hidden}
facts:
  - {subject: The Colosseum, relation: '{} is located in the country of', target: Italy}
"""
CITIES = """name: cities
settings: {samples: 2, kinds: hidden}
facts:
  - {subject: Toyota, relation: '{} was founded in the country of', target: Japan}
  - {subject: Mount Fuji, relation: '{} is the highest mountain of', target: Japan}
"""


def test_the_reference_list_is_a_few_hundred_distinct_subjects():
    subjects = reference_subjects()
    assert 300 <= len(subjects.names) == len(set(subjects.names))
    assert all(not name.startswith("#") and name == name.strip() for name in subjects.names)


def test_the_model_noise_is_three_times_the_std_of_the_reference_embeddings_by_hand(tmp_path):
    locator = Locator(model=MODEL, device="cpu", cache_dir=tmp_path)
    loaded = locator.load()
    table = loaded.model.get_submodule(loaded.adapter.embed).weight.detach().double().numpy()
    rows = [table[loaded.tokenizer(name, add_special_tokens=False)["input_ids"]] for name in reference_subjects().names]
    by_hand = 3 * np.std(np.concatenate(rows), ddof=1)
    noise = locator.model_noise()
    assert noise.std == pytest.approx(by_hand, rel=1e-5)
    assert noise.source == "model" and reference_subjects().sha256[:12] in noise.reference


def test_two_runs_over_different_fact_sets_use_the_same_noise_and_their_traces_say_so(tmp_path):
    landmarks = parse_factset(LANDMARKS, tmp_path / "landmarks.yaml")
    cities = parse_factset(CITIES, tmp_path / "cities.yaml")
    first = Locator(model=MODEL, device="cpu", cache_dir=tmp_path / "a")
    second = Locator(model=MODEL, device="cpu", cache_dir=tmp_path / "b")
    one = first.trace(landmarks.facts[0].fact, landmarks)
    other = second.trace(cities.facts[1].fact, cities)
    assert one.noise == other.noise
    assert one.noise.source == "model" and "reference subjects" in one.noise.calibration
    assert Trace.from_json(one.to_json()).noise == one.noise
    # Per fact set, on request, they differ: the fact sets' subjects are not the same.
    per_set = [Locator(model=MODEL, device="cpu", use_cache=False, overrides={"noise_calibration": "factset"}).noise_for(fs)
               for fs in (landmarks, cities)]
    assert per_set[0].std != per_set[1].std and {n.source for n in per_set} == {"factset"}


def test_the_model_noise_is_measured_once_and_read_from_the_cache_folder(tmp_path, monkeypatch):
    measured = Locator(model=MODEL, device="cpu", cache_dir=tmp_path).model_noise()
    assert list((tmp_path / "noise").glob("*.json"))

    def no_measuring(*_args: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr("fact_locator.tracing.corruption.reference_embedding_std", no_measuring)
    assert Locator(model=MODEL, device="cpu", cache_dir=tmp_path).model_noise() == measured
    # Without the cache it measures.
    with pytest.raises(AssertionError, match="measured again"):
        Locator(model=MODEL, device="cpu", cache_dir=tmp_path, use_cache=False).model_noise()


def test_a_lone_trace_and_the_tracer_use_the_model_noise_and_fact_calibrates_on_the_subject(tmp_path):
    landmarks = parse_factset(LANDMARKS, tmp_path / "landmarks.yaml")
    fact = landmarks.facts[0].fact
    locator = Locator(model=MODEL, device="cpu", cache_dir=tmp_path, overrides={"samples": 2, "kinds": ("hidden",)})
    lone = locator.trace(fact)
    assert lone.noise == locator.model_noise()
    assert locator.tracer(locator.settings_for()).trace(fact).noise == lone.noise
    own = Locator(model=MODEL, device="cpu", cache_dir=tmp_path,
                  overrides={"samples": 2, "kinds": ("hidden",), "noise_calibration": "fact"}).trace(fact)
    assert own.noise.source == "fact" and own.noise.std != lone.noise.std


def test_a_trace_written_before_the_noise_source_was_kept_still_loads(tmp_path):
    landmarks = parse_factset(LANDMARKS, tmp_path / "landmarks.yaml")
    trace = Locator(model=MODEL, device="cpu", cache_dir=tmp_path).trace(landmarks.facts[0].fact, landmarks)
    data = trace.to_dict()
    data["noise"] = {"std": 0.5, "calibration": "given"}
    assert Trace.from_dict(data).noise == NoiseInfo(0.5, "given")


def test_factset_calibration_needs_a_fact_set():
    from fact_locator.errors import UsageError

    with pytest.raises(UsageError, match="noise_calibration factset needs a fact set"):
        Locator(model=MODEL, device="cpu", use_cache=False, overrides={"noise_calibration": "factset"}).noise_for(None)
