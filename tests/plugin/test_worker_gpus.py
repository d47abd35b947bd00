"""Under pytest-xdist each worker takes its own GPU (`--fl-devices`, ini `fl_devices`) as its
CUDA_VISIBLE_DEVICES, and the results say which worker handled each fact on which device.
On this CPU machine: the workers get their entries all the same (the worker's environment is
what is checked), and with the CPU device nothing changes."""

from __future__ import annotations

import pytest

from tests.support.pytester_harness import GEO

# Every worker runs it (--dist each) and writes down the GPU it was given.
ENV_PROBE = """
import os
from pathlib import Path

def test_probe(worker_id):
    Path("env-" + worker_id).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_each_worker_sees_only_its_gpu(fl) -> None:
    pytest.importorskip("xdist")
    fl.pytester.makepyfile(test_probe=ENV_PROBE)
    result = fl.run_subprocess("-n", "3", "--dist", "each", "--fl-device", "cuda", "--fl-devices", "0,2", "test_probe.py",
                               timeout=120)
    result.assert_outcomes(passed=3)
    seen = {k: (fl.path / f"env-gw{k}").read_text() for k in range(3)}
    assert seen == {0: "0", 1: "2", 2: "0"}  # more workers than GPUs: in turn
    result.stdout.fnmatch_lines(["*xdist workers take GPUs 0,2 in turn*"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_ini_key_and_the_callers_list(fl, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    fl.pytester.makepyfile(test_probe=ENV_PROBE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    result = fl.run_subprocess("-n", "2", "--dist", "each", "--fl-device", "cuda", "test_probe.py", timeout=120)
    result.assert_outcomes(passed=2)
    assert [(fl.path / f"env-gw{k}").read_text() for k in range(2)] == ["5", "7"]
    fl.ini(fl_devices="3,1")
    result = fl.run_subprocess("-n", "2", "--dist", "each", "--fl-device", "cuda", "test_probe.py", timeout=120)
    result.assert_outcomes(passed=2)
    assert [(fl.path / f"env-gw{k}").read_text() for k in range(2)] == ["3", "1"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_on_the_cpu_nothing_changes_and_the_results_name_worker_and_device(fl, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fl.factset("geo", GEO)
    fl.pytester.makepyfile(test_probe=ENV_PROBE)
    result = fl.run_subprocess("-n", "2", "--fl-device", "cpu", "--fl-devices", "0,1", "--fl-json", "results.json",
                               timeout=180)
    result.assert_outcomes(passed=4, xfailed=1)
    result.stdout.fnmatch_lines(["*--fl-devices 0,1 unused: device=cpu*"])
    assert {p.read_text() for p in fl.path.glob("env-gw*")} == {"<unset>"}
    facts = fl.results()["factsets"][0]["facts"]
    assert {f["device"] for f in facts} == {"cpu"}
    assert {f["worker"] for f in facts} <= {"gw0", "gw1"} and all(f["worker"] for f in facts)


def test_a_bad_list_is_a_usage_error(fl) -> None:
    result = fl.run("--fl-devices", "0,x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fl-devices*'x' is not a GPU*"])
