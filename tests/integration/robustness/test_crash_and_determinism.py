"""Crash safety (SIGKILL mid-run, then resume), concurrent runs sharing one cache, and
determinism (batch size, xdist workers, fact order)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FACTS = [
    ("colosseum", "The Colosseum", "{} is located in the country of", "Italy"),
    ("toyota", "Toyota", "{} was founded in the country of", "Japan"),
    ("fuji", "Mount Fuji", "{} is the highest mountain of", "Japan"),
    ("needle", "The Space Needle", "{} is located in the city of", "Seattle"),
    ("eiffel", "The Eiffel Tower", "{} is located in the city of", "Paris"),
    ("dante", "Dante Alighieri", "The mother tongue of {} is", "Italian"),
]
IDS = [f[0] for f in FACTS]


def factset_yaml(facts=FACTS, settings="  kinds: [hidden]\n") -> str:
    lines = ["name: crash", "unknown: trace", "settings:", settings.rstrip("\n"), "facts:"]
    for fid, subject, relation, target in facts:
        lines += [f"  - id: {fid}", f"    subject: {subject}", f'    relation: "{relation}"', f"    target: {target}"]
    return "\n".join(lines) + "\n"


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "factsets", *args]


def cache_entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "traces").rglob("*.json") if not p.name.startswith("."))


def assert_cache_valid(cache: Path, expected: int) -> None:
    from fact_locator.cache import TraceCache
    from fact_locator.tracing.trace import Trace

    entries = cache_entries(cache)
    assert len(entries) == expected, entries
    for path in entries:
        trace = Trace.from_json(path.read_text(encoding="utf-8"))  # valid JSON, a whole Trace
        assert trace.ie and trace.fact_id in IDS
    assert len(TraceCache(cache)) == expected


# -- crash safety ---------------------------------------------------------------------------------
def test_sigkill_mid_run_then_resume_recomputes_only_the_unfinished_facts(fl):
    fl.factset("crash", factset_yaml())
    env = dict(os.environ, FL_TRACE_SLEEP="1.5")
    proc = subprocess.Popen(pytest_cmd(), cwd=fl.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while len(fl.traced()) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # no cleanup, no atexit, no finally
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = fl.traced()
    assert 2 <= len(first) < len(IDS)
    entries_after_kill = cache_entries(fl.cache)
    assert len(first) <= len(entries_after_kill) <= len(first) + 1  # at most one was cached but not yet logged
    assert_cache_valid(fl.cache, len(entries_after_kill))

    result = fl.run_subprocess("--fl-json", "results.json")
    assert result.ret == 0, result.stdout.str()
    second = fl.traced()[len(first):]
    assert not set(first) & set(second), (first, second)  # nothing finished was computed again
    assert set(first) | set(second) == set(IDS)
    assert len(second) == len(IDS) - len(entries_after_kill)
    stats = fl.results()["settings"]["stats"]
    assert stats["traced"] == len(second) and stats["cached"] == len(entries_after_kill)
    assert_cache_valid(fl.cache, len(IDS))


# -- concurrent runs ------------------------------------------------------------------------------
def test_two_processes_sharing_one_cache_never_corrupt_it(fl):
    fl.factset("crash", factset_yaml(FACTS[:4]))
    procs = [subprocess.Popen(pytest_cmd("--fl-json", f"r{i}.json"), cwd=fl.path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "TraceCacheWarning" not in "".join(outs)
    assert_cache_valid(fl.cache, 4)
    for i in range(2):  # both runs got every trace, whichever process wrote it
        data = fl.results(f"r{i}.json")
        assert all(f["trace"] is not None for f in data["factsets"][0]["facts"])
    # a third run reads them all
    result = fl.run_subprocess("--fl-json", "r3.json")
    result.stdout.fnmatch_lines(["fact-locator: 0 facts traced, 4 from the cache*"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_xdist_workers_sharing_one_cache_never_corrupt_it(fl):
    pytest.importorskip("xdist")
    fl.factset("crash", factset_yaml(FACTS[:4]))
    fl.factset("crash2", factset_yaml(FACTS[:4]).replace("name: crash", "name: crash2"))  # the same 4 traces
    result = fl.run_subprocess("-n", "2", "--fl-json", "results.json")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=8)
    assert "TraceCacheWarning" not in result.stdout.str()
    assert_cache_valid(fl.cache, 4)


# -- determinism ----------------------------------------------------------------------------------
def _numbers(trace: dict) -> dict:
    """What must not change: probabilities, effects, noise, tokens (not timings, not versions)."""
    return {k: trace[k] for k in ("tokens", "subject_range", "target_id", "p_clean", "p_corrupt", "ie", "noise")}


def _max_diff(a, b) -> float:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b)
    assert a == b
    return 0.0


# The tracer is not bit-identical across batch sizes (float32 sums in another order):
# measured max |difference| 9.3e-10 on the tiny Llama, so 1e-6 is the tolerance.
BATCH_TOLERANCE = 1e-6


def test_same_seed_gives_bit_identical_traces_and_batch_size_changes_almost_nothing():
    from fact_locator.facts import Fact
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.tracer import Tracer
    from tests.support.tiny_models import tiny_loaded

    loaded = tiny_loaded("llama")
    fact = Fact("The Colosseum", "{} is located in the country of", "Italy", id="colosseum")
    runs = {bs: json.loads(Tracer(loaded, TraceSettings(samples=3, batch_size=bs, seed=7)).trace(fact).to_json())
            for bs in (1, 5, 4096)}
    again = json.loads(Tracer(loaded, TraceSettings(samples=3, batch_size=1, seed=7)).trace(fact).to_json())
    assert _numbers(again) == _numbers(runs[1])  # same settings: bit-identical
    for bs in (5, 4096):
        assert _max_diff(_numbers(runs[bs]), _numbers(runs[1])) <= BATCH_TOLERANCE, bs
    other_seed = json.loads(Tracer(loaded, TraceSettings(samples=3, batch_size=1, seed=8)).trace(fact).to_json())
    assert _numbers(other_seed)["ie"] != _numbers(runs[1])["ie"]  # the seed is used


def _run_traces(fl, name: str, *args: str) -> dict:
    result = fl.run_subprocess("--fl-no-cache", "--fl-json", name, *args)
    assert result.ret == 0, result.stdout.str()
    return {f["id"]: _numbers(f["trace"]) for f in fl.results(name)["factsets"][0]["facts"]}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_traces_do_not_depend_on_xdist_workers_or_fact_order(fl):
    pytest.importorskip("xdist")
    facts = FACTS[:4]
    fl.factset("crash", factset_yaml(facts))
    serial = _run_traces(fl, "serial.json")
    parallel = _run_traces(fl, "parallel.json", "-n", "2")
    fl.factset("crash", factset_yaml(list(reversed(facts))))
    reversed_order = _run_traces(fl, "reversed.json")
    assert set(serial) == {f[0] for f in facts}
    # Serially a set's facts share forwards; under `-n 2` each is traced alone. That changes
    # float32 sums only (README, "Deterministic"): all but the effects is identical.
    assert {f: {k: v for k, v in t.items() if k != "ie"} for f, t in parallel.items()} == \
        {f: {k: v for k, v in t.items() if k != "ie"} for f, t in serial.items()}
    assert _max_diff(parallel, serial) <= 1e-6, _max_diff(parallel, serial)
    assert _max_diff(reversed_order, serial) == 0.0, _max_diff(reversed_order, serial)
