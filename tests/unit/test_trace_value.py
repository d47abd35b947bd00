"""The Trace value: token categories, peaks and a lossless JSON round trip."""

import json

import pytest

from fact_locator.errors import ResultsError
from fact_locator.tracing.trace import TokenCategory, Trace, token_categories
from tests.support.trace_factory import make_trace

C = TokenCategory


def test_categories_follow_the_paper():
    assert token_categories(7, (1, 4)) == [C.BEFORE_SUBJECT, C.FIRST_SUBJECT, C.MIDDLE_SUBJECT, C.LAST_SUBJECT,
                                          C.FIRST_SUBSEQUENT, C.FURTHER, C.LAST]


def test_a_one_token_subject_is_both_first_and_last_subject_token():
    trace = make_trace(subject_range=(1, 2))
    assert trace.positions(C.FIRST_SUBJECT) == trace.positions(C.LAST_SUBJECT) == [1]


def test_a_subject_ending_right_before_the_last_token_makes_it_first_subsequent_and_last():
    """ROME's average_causal_effects notebook adds scores[first_a] (the token after the
    subject) and scores[last_a] (the last token) on their own: when they are one token, it
    counts in both."""
    trace = make_trace(subject_range=(0, 4))
    assert trace.categories[4] is C.LAST
    assert trace.positions(C.FIRST_SUBSEQUENT) == trace.positions(C.LAST) == [4]
    assert trace.positions(C.FURTHER) == []
    assert make_trace().positions(C.FIRST_SUBSEQUENT) == [3]  # the usual case: the token after the subject
    assert make_trace(subject_range=(2, 5)).positions(C.FIRST_SUBSEQUENT) == []  # the subject ends the prompt


def test_te_is_clean_minus_corrupt_and_the_peak_is_the_largest_cell():
    trace = make_trace()
    assert trace.te == pytest.approx(0.70, abs=1e-12)
    assert trace.peak("mlp") == (0, 2, 0.35)
    assert trace.known


def test_json_round_trip_is_lossless():
    trace = make_trace()
    again = Trace.from_json(trace.to_json())
    assert again == trace
    assert again.ie["mlp"][1][4] == 0.3000000000000001  # floats survive bit for bit
    assert again.timings == trace.timings and again.versions == trace.versions


def test_json_has_the_documented_top_level_keys():
    data = json.loads(make_trace().to_json())
    for key in ["model", "tokens", "subject_range", "target", "p_clean", "p_corrupt", "te", "ie", "settings"]:
        assert key in data
    assert data["subject_range"] == [0, 3]
    assert len(data["ie"]["mlp"]) == 2 and len(data["ie"]["mlp"][0]) == len(data["tokens"])
    for key in ["samples", "noise_std", "window", "seed"]:
        assert key in data["settings"]


def test_another_schema_version_is_refused(tmp_path):
    data = json.loads(make_trace().to_json())
    data["version"] = 99
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="version 99"):
        Trace.load(path)


def test_truncated_json_names_the_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(make_trace().to_json()[:50])
    with pytest.raises(ResultsError, match="t.json: not valid JSON"):
        Trace.load(path)
