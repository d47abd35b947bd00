"""smollm2-135m loaded with a device map that leaves part of its layers on disk traces one
fact as the model on one device does (to 1e-5): the device-map path on a real model."""

from pathlib import Path

import pytest
import torch

from fact_locator.facts import Fact
from fact_locator.tracing.settings import KINDS, TraceSettings
from fact_locator.tracing.tracer import Tracer

TOL = 1e-5


@pytest.mark.real_model
def test_smollm2_with_layers_on_disk_traces_as_on_one_device(tmp_path: Path) -> None:
    from fact_locator.models.loading import device_map_of, load_model

    plain = load_model("smollm2-135m", device="cpu", progress=False)
    # About 540 MB of float32 weights: 300 MB of CPU memory leaves the later layers on disk.
    mapped = load_model("smollm2-135m", device="cpu", progress=False, device_map="auto",
                        max_memory={"cpu": "300MB"}, offload_folder=tmp_path / "offload")
    placement = device_map_of(mapped.model)
    assert placement is not None and "disk" in placement.values() and "cpu" in placement.values()
    fact = Fact("The Colosseum", "{} is located in the country of", "Italy")
    settings = TraceSettings(samples=2, window=4)
    ours, theirs = Tracer(mapped, settings).trace(fact), Tracer(plain, settings).trace(fact)
    assert ours.p_clean == pytest.approx(theirs.p_clean, abs=TOL)
    assert ours.p_corrupt == pytest.approx(theirs.p_corrupt, abs=TOL)
    for kind in KINDS:
        diff = (torch.tensor(ours.ie[kind]) - torch.tensor(theirs.ie[kind])).abs().max().item()
        assert diff <= TOL, f"{kind}: max |IE offloaded - IE plain| = {diff:.3g}"
