"""Severed paths: restoring a hidden state while later MLP / attention outputs at that token
stay corrupted. Checked against the plain hidden trace and a hand-written single site; the
curves and shares at the last subject token go into the trace JSON and come back from it.
Every check runs in each metric (P(o), log P(o), logit difference): severed paths measure
what the trace measures.
(`trace --severed` on the command line: tests/integration/test_sweep_and_severed_commands.py.)"""

import json
from dataclasses import replace

import pytest
import torch

from fact_locator.facts import Fact
from fact_locator.settings import METRICS
from fact_locator.tracing.reference import reference_noise
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.severed import severed_trace
from fact_locator.tracing.trace import Trace
from fact_locator.tracing.tracer import Tracer
from tests.support.tiny_models import tiny_loaded

FACT = Fact("The Colosseum", "{} is located in the country of", "Italy", distractor="Paris")


@pytest.fixture(scope="module", params=METRICS)
def setup(request):
    loaded = tiny_loaded("llama", layers=4)
    tracer = Tracer(loaded, TraceSettings(kinds="hidden", samples=3, window=2, metric=request.param))
    return loaded, tracer, tracer.trace(FACT), severed_trace(tracer, FACT)


def measured(metric: str, logits: torch.Tensor, target_id: int, distractor_id: int) -> torch.Tensor:
    """The metric written out by hand, one value per row."""
    logits = logits.float()
    if metric == "prob":
        return torch.softmax(logits, -1)[:, target_id]
    if metric == "logprob":
        return torch.log_softmax(logits, -1)[:, target_id]
    return logits[:, target_id] - logits[:, distractor_id]


def test_the_unsevered_grid_is_the_hidden_trace_in_its_metric(setup):
    _, tracer, plain, severed = setup
    assert severed.metric == plain.metric == tracer.settings.metric
    for a, b in zip(plain.ie["hidden"], severed.ie["hidden"]):
        assert a == pytest.approx(b, abs=1e-5)
    assert severed.p_corrupt == pytest.approx(plain.corrupt_value, abs=1e-5)


def test_at_the_last_layer_nothing_is_left_to_sever(setup):
    _, _, _, severed = setup
    assert severed.ie["mlp"][-1] == pytest.approx(severed.ie["hidden"][-1], abs=1e-7)
    assert severed.ie["attn"][-1] == pytest.approx(severed.ie["hidden"][-1], abs=1e-7)


def test_one_severed_site_matches_a_hand_written_run(setup):
    loaded, tracer, plain, severed = setup
    model, adapter = loaded.model, loaded.adapter
    layer, token = 1, severed.subject_range[1] - 1
    ids = torch.tensor([plain.token_ids])
    n = ids.shape[1]
    clean_h, corrupt_mlp = {}, {}
    hs = [model.get_submodule(adapter.site_path("hidden", layer)).register_forward_hook(
        lambda m, i, o: clean_h.__setitem__("h", o[0, token].clone()))]
    with torch.no_grad():
        model(ids)
    hs.pop().remove()
    s, e = plain.subject_range
    noise = reference_noise(3, e - s, model.get_submodule(adapter.embed).weight.shape[1], plain.noise.std, 0)

    def add_noise(m, i, o):
        o = o.clone()
        o[:, s:e] += noise
        return o

    hs.append(model.get_submodule(adapter.embed).register_forward_hook(add_noise))
    for l in range(4):
        hs.append(model.get_submodule(adapter.site_path("mlp", l)).register_forward_hook(
            lambda m, i, o, l=l: corrupt_mlp.__setitem__(l, o[:, token].clone())))
    with torch.no_grad():
        model(ids.repeat(3, 1))
    for h in hs[1:]:
        h.remove()
    del hs[1:]

    def restore(m, i, o):
        o = o.clone()
        o[:, token] = clean_h["h"]
        return o

    hs.append(model.get_submodule(adapter.site_path("hidden", layer)).register_forward_hook(restore))
    for l in range(layer + 1, 4):
        def hold(m, i, o, l=l):
            o = o.clone()
            o[:, token] = corrupt_mlp[l]
            return o
        hs.append(model.get_submodule(adapter.site_path("mlp", l)).register_forward_hook(hold))
    distractor_id = tracer.prepare(FACT).distractor_id
    with torch.no_grad():
        values = measured(severed.metric, model(ids.repeat(3, 1)).logits[:, -1], plain.target_id, distractor_id)
    for h in hs:
        h.remove()
    assert severed.ie["mlp"][layer][token] == pytest.approx(values.mean().item() - plain.corrupt_value, abs=1e-5)
    assert severed.ie["mlp"][layer][token] != pytest.approx(severed.ie["hidden"][layer][token], abs=1e-9)


def test_the_share_through_a_module_is_one_minus_severed_over_plain_at_the_hidden_peak(setup):
    """No bound holds in general: severing can raise the effect (share < 0) or turn it
    negative (share > 1), and is reported unclipped. What holds is the definition, at the
    layer where the plain hidden effect peaks; no positive plain effect gives share 0."""
    _, _, _, severed = setup
    token = severed.subject_range[1] - 1
    column = [row[token] for row in severed.ie["hidden"]]
    layer = column.index(max(column))
    for kind in ("mlp", "attn"):
        expected = 1 - severed.ie[kind][layer][token] / column[layer] if column[layer] > 0 else 0.0
        assert severed.share_through(kind, token) == pytest.approx(expected, abs=1e-9)


def test_severing_the_mlps_removes_part_of_this_facts_effect():
    """In the logit difference this fact's hidden effect peaks at layer 0 (0.118); with the
    later MLPs held corrupted 0.077 of it is left: a share of about a third, strictly
    between none and all. (Numbers measured with the noise calibrated on this fact.)"""
    settings = TraceSettings(kinds="hidden", samples=3, window=2, metric="logit_diff", noise_calibration="fact")
    tracer = Tracer(tiny_loaded("llama", layers=4), settings)
    severed = severed_trace(tracer, FACT)
    token = severed.subject_range[1] - 1
    assert severed.ie["hidden"][0][token] == pytest.approx(0.1182, abs=1e-3)
    assert severed.ie["mlp"][0][token] == pytest.approx(0.0774, abs=1e-3)
    assert severed.share_through("mlp", token) == pytest.approx(0.345, abs=0.01)


def test_the_last_subject_token_alone_gives_the_same_column(setup):
    _, tracer, _, severed = setup
    token = severed.subject_range[1] - 1
    only = severed_trace(tracer, FACT, tokens="last_subject")
    for kind in ("hidden", "mlp", "attn"):
        assert [row[token] for row in only.ie[kind]] == pytest.approx([row[token] for row in severed.ie[kind]], abs=1e-6)
    assert only.share_through("mlp", token) == pytest.approx(severed.share_through("mlp", token), abs=1e-6)


def test_the_paths_at_the_last_subject_token_are_the_grids_column(setup):
    _, _, _, severed = setup
    token = severed.subject_range[1] - 1
    paths = severed.at_last_subject()
    assert paths.token == token and paths.token_text == severed.tokens[token]
    for kind in ("hidden", "mlp", "attn"):
        assert paths.curves[kind] == tuple(row[token] for row in severed.ie[kind])
    assert paths.peak_ie == max(paths.curves["hidden"]) == paths.curves["hidden"][paths.peak_layer]
    assert paths.shares == {"mlp": severed.share_through("mlp", token), "attn": severed.share_through("attn", token)}
    assert paths.p_corrupt == severed.p_corrupt


def test_a_trace_with_severed_paths_is_read_back_from_json(setup, tmp_path):
    _, _, plain, severed = setup
    path = tmp_path / "trace.json"
    path.write_text(replace(plain, severed=severed.at_last_subject()).to_json(indent=1))
    loaded = Trace.load(path)
    assert loaded.severed == severed.at_last_subject()
    assert set(loaded.severed.shares) == {"mlp", "attn"}
    assert len(loaded.severed.curves["mlp"]) == plain.n_layers


def test_a_trace_without_severed_paths_keeps_its_json(setup):
    _, _, plain, _ = setup
    data = json.loads(plain.to_json())
    assert "severed" not in data
    assert Trace.from_dict(data).severed is None  # trace JSON written before severed paths existed
