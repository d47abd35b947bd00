"""Expectations: each check's pass and fail messages, on hand-built traces and aggregates,
and the YAML expectation language's parser (errors carry file:line and a suggestion)."""

from __future__ import annotations

import pytest

from fact_locator.aggregate import aggregate
from fact_locator.errors import ExpectationFailed, FactSetError
from fact_locator.expectations import (
    Expectation,
    ExpectationSpec,
    Outcome,
    assert_expectation,
    ate_at_least,
    aie_at_least,
    check,
    grid_excerpt,
    ie_at_least,
    max_aie_greater,
    parse_comparison,
    parse_expectation,
    peak_at,
    peak_layer_between,
    peak_layer_in_half,
    stronger,
    te_at_least,
)
from fact_locator.models.identity import ModelIdentity
from fact_locator.tracing.trace import NoiseInfo, Trace

# "The Colosseum is located in the country of": subject = tokens 0..2
TOKENS = ("The", " Col", "osseum", " is", " located", " in", " the", " country", " of")
#          first  middle  last_subj  first_subsequent  further ...                      last
N_LAYERS = 4


def make_trace(
    peaks: dict[str, dict[tuple[int, int], float]] | None = None,
    *,
    kinds: tuple[str, ...] = ("hidden", "mlp", "attn"),
    p_clean: float = 0.75,
    p_corrupt: float = 0.05,
    tokens: tuple[str, ...] = TOKENS,
    subject_range: tuple[int, int] = (0, 3),
    base: float = 0.01,
    fact_id: str = "colosseum",
) -> Trace:
    """A trace whose grids are `base` everywhere except the cells given in `peaks[kind]`."""
    peaks = peaks or {}
    ie = {}
    for kind in kinds:
        cells = peaks.get(kind, {})
        ie[kind] = tuple(
            tuple(cells.get((layer, tok), base) for tok in range(len(tokens))) for layer in range(N_LAYERS)
        )
    return Trace(
        model=ModelIdentity(name="m", architecture="LlamaForCausalLM", n_layers=N_LAYERS, fingerprint="x"),
        fact_id=fact_id,
        subject="The Colosseum",
        relation="{} is located in the country of",
        prompt="The Colosseum is located in the country of",
        tokens=tokens,
        token_ids=tuple(range(len(tokens))),
        subject_range=subject_range,
        target="Italy",
        target_token=" Italy",
        target_id=99,
        top_token=" Italy",
        p_clean=p_clean,
        p_corrupt=p_corrupt,
        ie=ie,
        settings={"samples": 10, "window": 10, "kinds": list(kinds)},
        noise=NoiseInfo(0.1, "given"),
    )


def assert_outcome(outcome: Outcome, passed: bool, *fragments: str) -> None:
    assert outcome.passed is passed, outcome.message
    for fragment in fragments:
        assert fragment in outcome.message, f"{fragment!r} not in:\n{outcome.message}"


# ---------------------------------------------------------------------------------------
# Per-fact expectations
# ---------------------------------------------------------------------------------------


class TestPeakAt:
    def test_passes_when_the_peak_is_at_the_category(self):
        trace = make_trace({"mlp": {(1, 2): 0.35}})
        outcome = check(peak_at("mlp", "last_subject"), trace)
        assert_outcome(outcome, True, "mlp-peak: the mlp peak is at a last_subject token",
                       "IE 0.350 at layer 1, token 2 'osseum' (last_subject)")
        assert outcome.observed["layer"] == 1 and outcome.observed["token"] == 2

    def test_fails_and_shows_where_the_peak_is_with_a_grid_excerpt(self):
        trace = make_trace({"mlp": {(1, 1): 0.35}})
        outcome = check(peak_at("mlp", "last_subject"), trace)
        assert_outcome(outcome, False, "is not at a last_subject token",
                       "token 1 ' Col' (middle_subject)", "last_subject positions: [2]")
        # the excerpt: rows around layer 1, columns around token 1, 3 decimals, peak marked
        assert "0.350*" in outcome.message
        assert "layer   0" in outcome.message and "layer   3" in outcome.message
        assert "0.010" in outcome.message

    def test_a_one_token_subject_is_both_first_and_last_subject(self):
        tokens = ("Paris", " is", " the", " capital", " of")
        trace = make_trace({"hidden": {(2, 0): 0.5}}, tokens=tokens, subject_range=(0, 1))
        assert check(peak_at("hidden", "first_subject"), trace).passed
        assert check(peak_at("hidden", "last_subject"), trace).passed

    def test_missing_kind_fails_with_a_clear_message_not_a_keyerror(self):
        trace = make_trace(kinds=("hidden",))
        outcome = check(peak_at("mlp", "last_subject"), trace)
        assert_outcome(outcome, False, "kind 'mlp' was not traced (traced kinds: hidden)", "settings.kinds")

    def test_id_and_scope(self):
        exp = peak_at("attn", "last")
        assert (exp.id, exp.scope) == ("attn-peak", "fact")
        assert isinstance(exp, Expectation)

    def test_bad_arguments_raise_at_construction(self):
        with pytest.raises(ValueError, match="unknown kind 'mlpp'"):
            peak_at("mlpp", "last")
        with pytest.raises(ValueError, match="unknown token category 'final'"):
            peak_at("mlp", "final")


class TestPeakLayer:
    def test_between_inclusive(self):
        trace = make_trace({"mlp": {(2, 2): 0.4}})
        assert_outcome(check(peak_layer_between("mlp", 0, 2), trace), True, "layer 2, which is in layers 0-2 (of 4)")
        assert_outcome(check(peak_layer_between("mlp", 3, 3), trace), False, "layer 2, which is not in layers 3-3")

    def test_negative_bounds_count_from_the_top(self):
        trace = make_trace({"attn": {(3, 8): 0.4}})
        outcome = check(peak_layer_between("attn", -2, -1), trace)
        assert_outcome(outcome, True, "layers 2-3")

    def test_halves(self):
        low = make_trace({"mlp": {(1, 2): 0.4}})
        high = make_trace({"mlp": {(2, 2): 0.4}})
        assert_outcome(check(peak_layer_in_half("mlp", "lower"), low), True, "the lower half (layers 0-1 of 4)")
        assert_outcome(check(peak_layer_in_half("mlp", "lower"), high), False, "not in the lower half")
        assert_outcome(check(peak_layer_in_half("mlp", "upper"), high), True, "the upper half (layers 2-3 of 4)")
        assert peak_layer_in_half("mlp", "upper").id == "peak-layer-mlp"

    def test_empty_range_and_bad_half_are_refused(self):
        with pytest.raises(ValueError, match="empty"):
            peak_layer_between("mlp", 3, 1)
        with pytest.raises(ValueError, match="'lower' or 'upper'"):
            peak_layer_in_half("mlp", "middle")


class TestTe:
    def test_pass_and_fail_messages_show_the_probabilities(self):
        trace = make_trace(p_clean=0.75, p_corrupt=0.05)
        assert_outcome(check(te_at_least(0.3), trace), True,
                       "te: TE = 0.700 (P(o) 0.750 - P*(o) 0.050, o = ' Italy'); expected TE >= 0.300: holds")
        assert_outcome(check(te_at_least(0.8), trace), False, "expected TE >= 0.800: does not hold")

    def test_strict(self):
        trace = make_trace(p_clean=0.5, p_corrupt=0.25)
        assert check(te_at_least(0.25), trace).passed
        assert not check(te_at_least(0.25, strict=True), trace).passed


class TestIe:
    def test_max_over_layers_at_the_category(self):
        trace = make_trace({"mlp": {(1, 2): 0.2, (3, 2): 0.3, (0, 8): 0.9}})
        outcome = check(ie_at_least("mlp", "last_subject", 0.25), trace)
        assert_outcome(outcome, True, "ie-mlp-last_subject: max mlp IE at last_subject = 0.300 at layer 3",
                       "token 2 'osseum'", "expected >= 0.250")
        assert_outcome(check(ie_at_least("mlp", "last_subject", 0.5), trace), False, "= 0.300", ">= 0.500")

    def test_category_with_several_positions_uses_all(self):
        trace = make_trace({"hidden": {(0, 6): 0.4}})
        outcome = check(ie_at_least("hidden", "further", 0.4), trace)
        assert outcome.passed and outcome.observed["token"] == 6

    def test_absent_category_fails_clearly(self):
        tokens = ("Paris", " is", " in")  # no 'further' token
        trace = make_trace(tokens=tokens, subject_range=(0, 1))
        assert_outcome(check(ie_at_least("mlp", "further", 0.1), trace), False, "has no further token")


class TestStronger:
    def test_pass_and_fail(self):
        trace = make_trace({"mlp": {(1, 2): 0.35}, "attn": {(3, 2): 0.1}})
        assert_outcome(check(stronger("mlp", "attn", "last_subject"), trace), True,
                       "stronger-mlp-attn-last_subject: at last_subject, max mlp IE 0.350 (layer 1, token 2) > max attn IE 0.100")
        assert_outcome(check(stronger("attn", "mlp", "last_subject"), trace), False,
                       "max attn IE 0.100 (layer 3, token 2) <= max mlp IE 0.350", "expected attn to be stronger")

    def test_missing_kind(self):
        trace = make_trace(kinds=("mlp",))
        assert_outcome(check(stronger("mlp", "attn", "last"), trace), False, "kind 'attn' was not traced")


def test_a_fact_expectation_given_an_aggregate_fails_without_raising():
    agg = aggregate([make_trace()])
    assert_outcome(check(te_at_least(0.1), agg), False, "expected a Trace to check, got Aggregate")
    assert_outcome(check(ate_at_least(0.1), make_trace()), False, "expected a Aggregate to check, got Trace")


def test_assert_expectation_raises_expectation_failed_with_the_outcome():
    trace = make_trace(p_clean=0.2, p_corrupt=0.1)
    assert_expectation(te_at_least(0.05), trace)  # passes silently
    with pytest.raises(ExpectationFailed) as info:
        assert_expectation(te_at_least(0.5), trace)
    assert "TE = 0.100" in str(info.value)
    assert isinstance(info.value.outcome, Outcome) and not info.value.outcome.passed
    assert isinstance(info.value, AssertionError)


def test_grid_excerpt_clips_at_the_edges():
    trace = make_trace({"mlp": {(0, 0): 0.123456}})
    text = grid_excerpt(trace, "mlp", 0, 0)
    lines = text.splitlines()
    assert len(lines) == 1 + 3  # header + layers 0..2
    assert "0:The" in lines[0] and "2:osseum" in lines[0] and "3:" not in lines[0]
    assert "0.123*" in lines[1]


# ---------------------------------------------------------------------------------------
# Aggregate expectations
# ---------------------------------------------------------------------------------------


@pytest.fixture
def agg():
    a = make_trace({"mlp": {(1, 2): 0.4}, "attn": {(3, 8): 0.3, (2, 2): 0.05}}, p_clean=0.8, p_corrupt=0.1)
    b = make_trace({"mlp": {(1, 2): 0.2}, "attn": {(3, 8): 0.1, (2, 2): 0.03}}, p_clean=0.5, p_corrupt=0.2)
    return aggregate([a, b])  # ATE 0.5; mlp AIE at last_subject 0.3 at layer 1


def test_ate(agg):
    assert_outcome(check(ate_at_least(0.15), agg), True,
                   "ate: ATE = 0.500 over 2 facts (mean P(o) 0.650, mean P*(o) 0.150); expected ATE >= 0.150: holds")
    assert_outcome(check(ate_at_least(0.6), agg), False, "does not hold")


def test_aie(agg):
    outcome = check(aie_at_least("mlp", "last_subject", 0.25), agg)
    assert_outcome(outcome, True, "aie-mlp-last_subject: max mlp AIE at last_subject = 0.300 at layer 1 over 2 facts",
                   "1: 0.300*")
    assert_outcome(check(aie_at_least("mlp", "last_subject", 0.35), agg), False, "expected >= 0.350")


def test_aie_missing_kind(agg):
    only_mlp = aggregate([make_trace(kinds=("mlp",))])
    assert_outcome(check(aie_at_least("attn", "last", 0.1), only_mlp), False, "kind 'attn' was not traced")


def test_max_aie_greater(agg):
    exp = max_aie_greater("mlp", "last_subject", "attn", "last_subject")
    assert exp.id == "max-aie-mlp-last_subject-gt-attn-last_subject" and exp.scope == "aggregate"
    assert_outcome(check(exp, agg), True, "max mlp AIE at last_subject = 0.300 (layer 1) > max attn AIE at last_subject = 0.040")
    late = max_aie_greater("mlp", "last_subject", "attn", "last")
    assert_outcome(check(late, agg), True)  # 0.300 > 0.200
    assert_outcome(check(max_aie_greater("attn", "last", "mlp", "last_subject"), agg), False, "0.200 (layer 3) <= max mlp AIE")


# ---------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [(">= 0.3", ">=", 0.3), (">0.3", ">", 0.3), ("<= 1e-2", "<=", 0.01), ("< .5", "<", 0.5),
     (">= 20%", ">=", 0.2), ("≥ 0.1", ">=", 0.1), (0.25, ">=", 0.25)],
)
def test_parse_comparison(text, op, value):
    threshold = parse_comparison(text)
    assert threshold.op == op and threshold.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["0.3 <=", "=> 0.3", "at least 0.3", "== 0.3", True, None, ">= abc"])
def test_parse_comparison_refuses(text):
    with pytest.raises(ValueError):
        parse_comparison(text)


# ---------------------------------------------------------------------------------------
# The YAML expectation language
# ---------------------------------------------------------------------------------------

P = "sets/geo.yaml"


@pytest.mark.parametrize(
    ("item", "scope", "expected_id", "kind"),
    [
        ({"mlp-peak": "last_subject"}, "fact", "mlp-peak", "PeakAt"),
        ({"hidden-peak": {"at": "last"}}, "fact", "hidden-peak", "PeakAt"),
        ({"attn-peak": "last"}, "fact", "attn-peak", "PeakAt"),
        ({"peak-layer": {"kind": "mlp", "between": [0, 14]}}, "fact", "peak-layer-mlp", "PeakLayer"),
        ({"peak-layer": {"kind": "attn", "half": "upper"}}, "fact", "peak-layer-attn", "PeakLayer"),
        ({"te": ">= 0.3"}, "fact", "te", "TeThreshold"),
        ({"te": {"min": 0.3}}, "fact", "te", "TeThreshold"),
        ({"ie": {"kind": "mlp", "at": "last_subject", "min": 0.1}}, "fact", "ie-mlp-last_subject", "IeAtLeast"),
        ({"stronger": {"kind": "mlp", "than": "attn", "at": "last_subject"}}, "fact",
         "stronger-mlp-attn-last_subject", "Stronger"),
        ({"ate": ">= 0.15"}, "aggregate", "ate", "AteThreshold"),
        ({"aie": {"kind": "mlp", "at": "last_subject", "min": 0.05}}, "aggregate", "aie-mlp-last_subject", "AieAtLeast"),
        ({"max-aie": {"kind": "mlp", "at": "last_subject", "greater-than": {"kind": "attn", "at": "last_subject"}}},
         "aggregate", "max-aie-mlp-last_subject-gt-attn-last_subject", "MaxAieGreater"),
    ],
)
def test_every_form_parses_to_a_stable_id(item, scope, expected_id, kind):
    spec = parse_expectation(item, P, 7, scope)
    assert isinstance(spec, ExpectationSpec)
    assert spec.id == expected_id and spec.line == 7 and spec.xfail is None
    assert type(spec.expectation).__name__ == kind
    assert spec.expectation.scope == scope
    assert spec.source  # readable text for messages


def test_parsed_expectations_check_like_the_python_api():
    trace = make_trace({"mlp": {(1, 2): 0.35}})
    spec = parse_expectation({"ie": {"kind": "mlp", "at": "last_subject", "min": 0.3}}, P, 3, "fact")
    assert check(spec.expectation, trace).passed
    spec = parse_expectation({"te": "> 0.7"}, P, 3, "fact")
    assert not check(spec.expectation, trace).passed  # TE is 0.700, not > 0.7 (float: 0.75-0.05)


def test_id_override_and_xfail_beside_or_inside():
    beside = parse_expectation({"te": ">= 0.3", "id": "te-strong", "xfail": "weak on small models"}, P, 4, "fact")
    assert beside.id == "te-strong" and beside.xfail == "weak on small models"
    inside = parse_expectation({"ie": {"kind": "mlp", "at": "last", "min": 0.1, "xfail": "late site"}}, P, 4, "fact")
    assert inside.id == "ie-mlp-last" and inside.xfail == "late site"


def test_unknown_name_suggests_the_closest_with_file_and_line():
    with pytest.raises(FactSetError) as info:
        parse_expectation({"mlp-peek": "last_subject"}, P, 12, "fact")
    assert str(info.value).startswith("sets/geo.yaml:12: unknown per-fact expectation 'mlp-peek'; did you mean 'mlp-peak'?")
    assert info.value.line == 12 and info.value.path == P


@pytest.mark.parametrize(
    ("item", "scope", "message"),
    [
        ({"ate": ">= 0.1"}, "fact", "'ate' is an aggregate expectation; put it under the set's 'aggregate:'"),
        ({"te": ">= 0.1"}, "aggregate", "'te' is a per-fact expectation; put it under 'expect:'"),
        ({"mlp-peak": "last_subjet"}, "fact", "unknown token category 'last_subjet' for 'at'; did you mean 'last_subject'?"),
        ({"ie": {"kind": "mpl", "at": "last", "min": 0.1}}, "fact", "unknown kind 'mpl' for 'kind'; did you mean 'mlp'?"),
        ({"ie": {"kind": "mlp", "at": "last"}}, "fact", "ie: needs 'min' (it takes kind, at, min)"),
        ({"ie": {"kind": "mlp", "at": "last", "min": "high"}}, "fact", "'min' must be a number, got str 'high'"),
        ({"ie": {"kind": "mlp", "at": "last", "minimum": 0.1}}, "fact", "ie: unknown argument 'minimum'; did you mean 'min'?"),
        ({"ie": "mlp"}, "fact", "ie: takes a mapping {kind: ..., at: ..., min: ...}, got str 'mlp'"),
        ({"te": "at least 0.3"}, "fact", "te: cannot read the comparison 'at least 0.3'"),
        ({"peak-layer": {"kind": "mlp"}}, "fact", "exactly one of 'between: [low, high]' or 'half: lower|upper'"),
        ({"peak-layer": {"kind": "mlp", "between": [5]}}, "fact", "'between' must be two layer numbers"),
        ({"peak-layer": {"kind": "mlp", "between": [9, 2]}}, "fact", "range [9, 2] is empty"),
        ({"peak-layer": {"kind": "mlp", "half": "top"}}, "fact", "'half' must be lower or upper"),
        ({"stronger": {"kind": "mlp", "than": "mlp", "at": "last"}}, "fact", "two different kinds"),
        ({"max-aie": {"kind": "mlp", "at": "last", "greater-than": "attn"}}, "aggregate", "'greater-than' takes a mapping"),
        ({"max-aie": {"kind": "mlp", "at": "last", "greater-than": {"kind": "atn", "at": "last"}}}, "aggregate",
         "max-aie: greater-than: unknown kind 'atn' for 'kind'; did you mean 'attn'?"),
        ({"te": ">= 0.3", "ie": {}}, "fact", "one expectation per list item"),
        ({"xfail": "why"}, "fact", "no expectation named"),
        ({"te": ">= 0.3", "id": "has space"}, "fact", "'id' must match"),
        ({"te": ">= 0.3", "xfail": True}, "fact", "'xfail' takes the reason as a string"),
        ("te", "fact", "an expectation is a mapping such as"),
    ],
)
def test_parser_errors_carry_file_and_line(item, scope, message):
    with pytest.raises(FactSetError) as info:
        parse_expectation(item, P, 21, scope)
    assert info.value.line == 21
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith("sets/geo.yaml:21: ")


# -- bootstrap intervals ------------------------------------------------------------------------
@pytest.fixture
def agg_ci():
    traces = [make_trace({"mlp": {(1, 2): 0.2 + 0.05 * i}}, p_clean=0.5 + 0.05 * i, p_corrupt=0.1, fact_id=f"f{i}")
              for i in range(6)]
    return aggregate(traces, intervals=True)


def test_aggregate_keeps_seeded_intervals_and_round_trips(agg_ci):
    from fact_locator.aggregate import Aggregate

    iv = agg_ci.intervals["ate"]
    assert iv["level"] == 0.95 and iv["n"] == 6 and iv["low"] < agg_ci.ate < iv["high"]
    assert set(agg_ci.intervals) >= {"ate", "aie:mlp:last_subject", "aie:mlp:last", "aie:hidden:last"}
    assert agg_ci.layers["aie:mlp:last_subject"] == 1
    again = Aggregate.from_dict(agg_ci.to_dict())
    assert again == agg_ci
    # an old results file (no samples, no intervals) still loads
    data = agg_ci.to_dict()
    for key in ("samples", "layers", "intervals"):
        data.pop(key)
    assert Aggregate.from_dict(data).intervals == {}


def test_ate_lower_bound_expectation_parses_and_checks(agg_ci):
    iv = agg_ci.intervals["ate"]
    passing = parse_expectation({"ate": f">= {iv['low'] - 0.01:.4f} at 95%"}, "s.yaml", 3, "aggregate").expectation
    assert_outcome(check(passing, agg_ci), True, "ate: ATE = 0.525, 95% interval [", "over 6 facts",
                   "expected the lower bound >=", ": holds")
    # the estimate clears the threshold but the lower bound does not
    failing = parse_expectation({"ate": f">= {agg_ci.ate - 0.001:.4f} at 95%"}, "s.yaml", 3, "aggregate").expectation
    outcome = check(failing, agg_ci)
    assert_outcome(outcome, False, "does not hold", f"[{iv['low']:.3f}, {iv['high']:.3f}]")
    assert check(ate_at_least(agg_ci.ate - 0.001), agg_ci).passed  # the point estimate alone passes
    # another level is bootstrapped from the per-fact values
    wide = check(ate_at_least(0.0, level=0.99), agg_ci)
    assert wide.passed and "99% interval" in wide.message and wide.observed["low"] <= iv["low"]


def test_aie_lower_bound_expectation(agg_ci):
    spec = parse_expectation({"aie": {"kind": "mlp", "at": "last_subject", "min": 0.1, "level": 0.95}},
                             "s.yaml", 3, "aggregate")
    assert_outcome(check(spec.expectation, agg_ci), True, "max mlp AIE at last_subject (layer 1) = 0.325, 95% interval")
    high = aie_at_least("mlp", "last_subject", 0.3, level=0.95)
    assert_outcome(check(high, agg_ci), False, "expected the lower bound >= 0.300: does not hold")


def test_interval_expectation_without_intervals_fails_clearly(agg):
    assert_outcome(check(ate_at_least(0.1, level=0.95), agg), False, "no per-fact values for a 95% interval")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"ate": ">= 0.1 at 120%"}, "level must be between 50% and 100%"),
        ({"ate": ">= 0.1 at ninety"}, "cannot read the comparison"),
        ({"aie": {"kind": "mlp", "at": "first_subject", "min": 0.1, "level": 0.95}}, "kept only at last_subject and last"),
        ({"aie": {"kind": "mlp", "at": "last", "min": 0.1, "level": "high"}}, "the level must be a number such as 0.95"),
    ],
)
def test_interval_expectation_parse_errors(value, fragment):
    with pytest.raises(FactSetError) as info:
        parse_expectation(value, "s.yaml", 7, "aggregate")
    assert fragment in str(info.value) and str(info.value).startswith("s.yaml:7: ")
