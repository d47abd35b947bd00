"""A model loaded with a device map (`load_model(..., device_map=...)`), some of its layers
offloaded to disk by accelerate, traces exactly as the same model on one device: the same
numbers (to 1e-5), the same cache key, and the engine still equals the reference loop.

On this CPU machine the offloaded layers are the ones that cross a boundary: their weights
wait on disk (parameters on the meta device) and accelerate's hooks bring them in for each
forward, so every hook, replayed layer, staggered layer, partial MLP, KV-suffix cache and
read-out buffer of the engine meets a layer it does not own the weights of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fact_locator.errors import DeviceError
from fact_locator.models.loading import device_map_of, load_model
from fact_locator.trace_key import trace_key
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.tracer import Tracer
from tests.support.reference_check import SUBJECT_FIRST, SUBJECT_LAST, SUBJECT_MIDDLE, assert_equal_to_reference, likeliest_target
from tests.support.tiny_models import tiny_model, tiny_tokenizer

TOL = 1e-5
ARCHITECTURES = ("gpt2", "llama", "gpt_neox")
LAYERS = 4


def _save(folder: Path, model_type: str) -> Path:
    tiny_model(model_type, layers=LAYERS).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


def _plain(folder: Path) -> Any:
    return load_model(str(folder), device="cpu", progress=False)


def _odd_layers_on_disk(folder: Path) -> dict[str, str]:
    """Every module on the CPU but the odd decoder layers and an untied output head, on disk:
    each layer's neighbours sit elsewhere than itself."""
    plain = _plain(folder)
    layers = plain.adapter.layers
    placement: dict[str, str] = {}
    for name, _module in plain.model.named_modules():
        if name and "." not in name.removeprefix(layers + ".") and name.startswith(layers + "."):
            placement[name] = "disk" if int(name.rsplit(".", 1)[1]) % 2 else "cpu"
    base = layers.rsplit(".", 1)[0]  # "model", "transformer", "gpt_neox"
    for name, _module in plain.model.get_submodule(base).named_children():
        if f"{base}.{name}" != layers:
            placement[f"{base}.{name}"] = "cpu"
    # A head tied to the input embeddings stays with them (accelerate cannot split a tied weight).
    placement["lm_head"] = "cpu" if getattr(plain.model.config, "tie_word_embeddings", False) else "disk"
    return placement


def _offloaded(folder: Path, how: str) -> Any:
    if how == "dict":
        return load_model(str(folder), device="cpu", progress=False, device_map=_odd_layers_on_disk(folder),
                          offload_folder=folder / f"offload-{how}")
    # accelerate's own placement, with too little CPU memory for the whole model.
    return load_model(str(folder), device="cpu", progress=False, device_map="auto", max_memory={"cpu": "300KB"},
                      offload_folder=folder / f"offload-{how}")


def _on_disk(loaded: Any) -> list[str]:
    return [name for name, p in loaded.model.named_parameters() if p.device.type == "meta"]


@pytest.mark.parametrize("how", ["dict", "auto"])
def test_an_offloaded_model_traces_as_the_model_on_one_device(model_dir: Path, how: str) -> None:
    plain, mapped = _plain(model_dir), _offloaded(model_dir, how)
    assert "disk" in device_map_of(mapped.model).values()
    assert _on_disk(mapped), "some weights wait on disk"
    assert mapped.device == plain.device == "cpu"
    assert mapped.identity == plain.identity
    settings = TraceSettings(samples=3, window=2)
    # Subject first, in the middle and last: the KV-suffix path from every kind of offset.
    for fact in (SUBJECT_FIRST, SUBJECT_MIDDLE, SUBJECT_LAST) if how == "dict" else (SUBJECT_MIDDLE,):
        fact = likeliest_target(plain, fact)
        ours_tracer = Tracer(mapped, settings)
        ours, theirs = ours_tracer.trace(fact), Tracer(plain, settings).trace(fact)
        assert ours_tracer.uses_kv_suffix, ours_tracer.suffix_fallback_reason  # the fast path, not a fallback
        assert ours.p_clean == pytest.approx(theirs.p_clean, abs=TOL)
        assert ours.p_corrupt == pytest.approx(theirs.p_corrupt, abs=TOL)
        for kind in KINDS:
            diff = (torch.tensor(ours.ie[kind]) - torch.tensor(theirs.ie[kind])).abs().max().item()
            assert diff <= TOL, f"{kind}: max |IE offloaded - IE plain| = {diff:.3g}"


def test_the_engine_equals_the_reference_loop_on_an_offloaded_model(tmp_path: Path) -> None:
    # The reference loop runs one forward per site, each bringing the offloaded weights in
    # from disk: one architecture and one short fact keep it quick. batch_size 5 splits the sites into batches.
    assert_equal_to_reference(_offloaded(_save(tmp_path, "llama"), "dict"), SUBJECT_LAST, samples=2, window=2, batch_size=5)


def test_a_device_map_does_not_change_the_cache_key(model_dir: Path) -> None:
    """Same weights, same device type, same numbers: a trace cached by the model on one
    device is found by the device-mapped one."""
    from fact_locator.tracing.trace import NoiseInfo

    plain, mapped = _plain(model_dir), _offloaded(model_dir, "dict")
    settings, noise = TraceSettings(samples=3), NoiseInfo(std=0.1, calibration="given")
    assert trace_key(mapped, SUBJECT_FIRST, settings, noise, "exact") == trace_key(plain, SUBJECT_FIRST, settings, noise, "exact")


def test_memory_limits_without_a_device_map_are_refused(tmp_path: Path) -> None:
    folder = _save(tmp_path, "llama")
    with pytest.raises(DeviceError, match="only apply with a device map"):
        load_model(str(folder), device="cpu", progress=False, max_memory={"cpu": "1GiB"})
    with pytest.raises(DeviceError, match="unknown device map 'everywhere'"):
        load_model(str(folder), device="cpu", progress=False, device_map="everywhere")
