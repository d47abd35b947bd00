"""Which GPU each pytest-xdist worker takes (`fact_locator.plugin.xdist`): worker gwK gets
entry K of the GPU list (`--fl-devices`, else the caller's CUDA_VISIBLE_DEVICES, else every
GPU), in turn when there are more workers than GPUs, as its own CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import pytest

from fact_locator.plugin.xdist import GPUS_KEY, WorkerGpu, assign_worker_gpu, gpu_for_worker, gpu_list, worker_index
from fact_locator.settings import SettingValueError, setting


def _no_count() -> int:
    raise AssertionError("the GPUs were counted although a list was given")


def test_worker_k_takes_entry_k_of_the_list() -> None:
    gpus = ("0", "2", "3")
    assert [gpu_for_worker(f"gw{k}", gpus) for k in range(3)] == ["0", "2", "3"]


def test_more_workers_than_gpus_take_them_in_turn() -> None:
    assert [gpu_for_worker(f"gw{k}", ("0", "2")) for k in range(5)] == ["0", "2", "0", "2", "0"]


def test_worker_ids_are_xdists() -> None:
    assert worker_index("gw12") == 12
    for bad in ("master", "gw", "gwx", "1"):
        with pytest.raises(ValueError, match="not a pytest-xdist worker id"):
            worker_index(bad)
    with pytest.raises(ValueError, match="no GPUs"):
        gpu_for_worker("gw0", ())


def test_the_option_beats_the_callers_cuda_visible_devices() -> None:
    assert gpu_list("0,2,3", {"CUDA_VISIBLE_DEVICES": "4,5"}, _no_count) == ("0", "2", "3")


def test_the_callers_cuda_visible_devices_is_the_list_as_cuda_reads_it() -> None:
    assert gpu_list(None, {"CUDA_VISIBLE_DEVICES": "4, 5"}, _no_count) == ("4", "5")
    assert gpu_list(None, {"CUDA_VISIBLE_DEVICES": "GPU-8a3f,MIG-1c"}, _no_count) == ("GPU-8a3f", "MIG-1c")
    # CUDA ignores everything from the first invalid entry on; an empty variable hides every GPU.
    assert gpu_list(None, {"CUDA_VISIBLE_DEVICES": "1,-1,2"}, _no_count) == ("1",)
    assert gpu_list(None, {"CUDA_VISIBLE_DEVICES": ""}, _no_count) == ()


def test_without_either_every_gpu_there_is() -> None:
    assert gpu_list(None, {}, lambda: 3) == ("0", "1", "2")
    assert gpu_list(None, {}, lambda: 0) == ()


@pytest.mark.parametrize("bad, reason", [
    ("0,x", "'x' is not a GPU"),
    ("0,,1", "'' is not a GPU"),
    ("1,1", "GPU 1 is listed twice"),
    ("cuda:0", "'cuda:0' is not a GPU"),
])
def test_a_bad_list_is_one_line_naming_the_entry(bad: str, reason: str) -> None:
    with pytest.raises(SettingValueError, match=reason):
        setting("devices").parse(bad)
    assert setting("devices").parse(" 0, 2,GPU-8a3f ") == "0,2,GPU-8a3f"


def test_a_worker_sets_its_own_cuda_visible_devices() -> None:
    environ: dict[str, str] = {"CUDA_VISIBLE_DEVICES": "0,2,3"}
    assigned = assign_worker_gpu({"workerid": "gw1", GPUS_KEY: "0,2,3"}, environ)
    assert assigned == WorkerGpu("gw1", "2", ("0", "2", "3"))
    assert environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_nothing_changes_outside_a_worker_or_without_gpus() -> None:
    environ: dict[str, str] = {}
    assert assign_worker_gpu(None, environ) is None  # not an xdist worker
    assert assign_worker_gpu({"workerid": "gw0", GPUS_KEY: ""}, environ) is None  # CPU, cuda:N, no GPU
    assert assign_worker_gpu({"workerid": "gw0"}, environ) is None  # a controller without fact-locator's key
    assert environ == {}


def test_the_controller_gives_gpus_only_for_cuda_or_auto_with_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from fact_locator.plugin import xdist

    monkeypatch.setattr(xdist, "_gpu_count", lambda: 0)  # a CPU machine
    assert xdist.workers_gpus("cpu", "0,1", {}) == ()
    assert xdist.workers_gpus("cuda:1", "0,1", {}) == ()  # one named GPU for every worker, as asked
    assert xdist.workers_gpus("auto", "0,1", {}) == ()  # auto on a CPU machine is the CPU
    assert xdist.workers_gpus("cuda", "0,1", {}) == ("0", "1")  # cuda without one: the load says so
    monkeypatch.setattr(xdist, "_gpu_count", lambda: 2)
    assert xdist.workers_gpus("auto", None, {}) == ("0", "1")
    assert xdist.workers_gpus("auto", None, {"CUDA_VISIBLE_DEVICES": "1"}) == ("1",)
