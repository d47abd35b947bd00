"""The Ray executor on a local Ray instance (2 CPUs, started once for this module) with the
tiny llama: Ray traces equal in-process ones, a killed actor loses no fact, a fact failing
for its own reason fails alone, a rerun resumes from the cache, and the pytest plugin runs
`--fl-executor ray` end to end (docs/scaling.md, "A Ray cluster")."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the extra: pip install 'fact-locator[ray]'")

from fact_locator.cache import TraceCache  # noqa: E402
from fact_locator.errors import FactError, UsageError  # noqa: E402
from fact_locator.factset import FactSet, load_factset  # noqa: E402
from fact_locator.locator import Locator  # noqa: E402
from fact_locator.models.identity import ModelIdentity  # noqa: E402
from fact_locator.scaleout.prefetch import Prefetched, Selection, prefetch  # noqa: E402
from fact_locator.scaleout.ray_executor import RayExecutor, RayProgress  # noqa: E402
from fact_locator.scaleout.remote_locator import PrefetchedLocator  # noqa: E402
from fact_locator.scaleout.work import ActorInfo, LocatorConfig  # noqa: E402
from tests.support.pytester_harness import FL, GEO, ROOT, SUPPORT, import_heavy_modules  # noqa: E402

MODEL = "python:tests.support.fl_tiny:llama"
CONFIG = LocatorConfig(model=MODEL, device="cpu", overrides=(("samples", 2), ("window", 2)))

PLACES = [("The Colosseum", "Italy"), ("Toyota", "Japan"), ("The Eiffel Tower", "France"), ("Mount Fuji", "Japan"),
          ("The Space Needle", "Seattle"), ("Dante Alighieri", "Italian"), ("The Louvre", "Paris"), ("Big Ben", "London")]


def factset_text(n: int, extra: str = "") -> str:
    lines = ["name: places", "unknown: trace", "facts:"]
    for i, (subject, target) in enumerate(PLACES[:n]):
        lines += [f"  - id: f{i}", f"    subject: {subject}", '    relation: "{} is located in"', f"    target: {target}"]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # The actors import the test models as the inner pytest sessions name them (python:fl_tiny:...).
    path = os.pathsep.join([str(ROOT), str(SUPPORT)])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="class")
def started(local_ray: None) -> Iterator[RayExecutor]:
    # One pool for the class (each start loads the model on both actors); stopped before the
    # plugin tests, whose sessions start their own actors on the same two CPUs.
    ex = RayExecutor(CONFIG, workers=2)
    ex.start()
    yield ex
    ex.stop()


@pytest.fixture
def executor(started: RayExecutor) -> Iterator[RayExecutor]:
    yield started
    started.on_progress = None


def write_factset(tmp_path: Path, text: str) -> FactSet:
    path = tmp_path / "places.yaml"
    path.write_text(text)
    return load_factset(path)


def every_fact(fs: FactSet) -> list[Selection]:
    return [Selection(fs, tuple(s.id for s in fs.facts), fs.unknown)]


class TestOnePool:
    """Two CPU actors, started once for these tests."""

    def test_actors_report_one_model_and_ray_traces_equal_in_process(self, executor: RayExecutor, tmp_path: Path) -> None:
        import torch

        fs = write_factset(tmp_path, factset_text(4))
        assert len({info.identity.fingerprint for info in executor.infos if info.identity}) == 1
        cache = TraceCache(tmp_path / "cache")
        got = prefetch(executor, every_fact(fs), cache)
        assert sorted(got.traced_by.values()) == ["actor-0", "actor-0", "actor-1", "actor-1"]  # both actors worked
        assert len(cache) == 4  # the driver wrote every trace to the cache

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each actor runs (one CPU each): the same batches, the same sums
        try:
            local = Locator(model=MODEL, device="cpu", overrides=dict(CONFIG.overrides), use_cache=False)
            for spec in fs.facts:
                mine, theirs = local.trace(spec.fact, fs), got.traces[(str(fs.path), spec.id)]
                assert theirs.noise == mine.noise and theirs.token_ids == mine.token_ids
                assert theirs.ie == mine.ie, f"{spec.id}: a Ray trace differs from the in-process one"
                # The key the actor sent is the one the driver would compute itself.
                settings = local.settings_for(fs)
                assert got.outcomes[(str(fs.path), spec.id)].key == local.cache_key(spec.fact, settings, mine.noise)
                # Under `unknown: trace` too, the actors ran the clean check of the known rule in force.
                assert PrefetchedLocator.adopt(local, got).clean(spec.fact, fs) == local.clean(spec.fact, fs)
        finally:
            torch.set_num_threads(threads)


    def test_severed_paths_from_the_actors_equal_in_process_even_for_cached_traces(self, executor: RayExecutor,
                                                                                   tmp_path: Path) -> None:
        import torch

        fs = write_factset(tmp_path, factset_text(3))
        cache = TraceCache(tmp_path / "cache")
        traced = prefetch(executor, every_fact(fs), cache, severed=True)
        cached = prefetch(executor, every_fact(fs), cache, severed=True)  # traces from the cache, severed paths anew
        assert len(cached.from_cache) == 3 and not cached.traced_by
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            local = Locator(model=MODEL, device="cpu", overrides=dict(CONFIG.overrides), use_cache=False)
            for spec in fs.facts:
                mine = local.severed(spec.fact, fs)
                for got in (traced, cached):
                    theirs = PrefetchedLocator.adopt(local, got).severed(spec.fact, fs)
                    assert theirs.peak_layer == mine.peak_layer and theirs.token == mine.token
                    for kind, share in mine.shares.items():
                        assert abs(theirs.shares[kind] - share) < 1e-6, f"{spec.id} {kind}: Ray share differs"
        finally:
            torch.set_num_threads(threads)
        without = prefetch(executor, every_fact(fs), cache)  # no --fl-severed: none computed, none claimed
        with pytest.raises(UsageError, match="no severed paths"):
            PrefetchedLocator.adopt(Locator(model=MODEL, device="cpu", use_cache=False), without).severed(fs.facts[0].fact, fs)

    def test_the_results_stamp_names_the_actor_and_its_device(self, executor: RayExecutor, tmp_path: Path) -> None:
        fs = write_factset(tmp_path, factset_text(2))
        got = prefetch(executor, every_fact(fs), TraceCache(tmp_path / "cache"))
        stamps = PrefetchedLocator.adopt(Locator(model=MODEL, device="cpu", use_cache=False), got).fact_stamps()
        assert set(stamps) == {(str(fs.path), "f0"), (str(fs.path), "f1")}
        assert {stamp for stamp in stamps.values()} <= {("ray actor-0", "cpu"), ("ray actor-1", "cpu")}

    def test_a_killed_actor_loses_nothing_and_counts_nothing_twice(self, executor: RayExecutor, tmp_path: Path) -> None:
        fs = write_factset(tmp_path, factset_text(8))
        victim = executor.actors[1]
        pid_before = ray.get(victim.info.remote()).pid
        kills = []

        def kill_once(progress: RayProgress) -> None:
            # After the first traced chunk the other actor still has units in flight: kill it there.
            if progress.phase == "trace" and progress.done > 0 and not kills:
                kills.append(progress.done)
                ray.kill(victim, no_restart=False)

        executor.on_progress = kill_once
        cache = TraceCache(tmp_path / "cache")
        got = prefetch(executor, every_fact(fs), cache)
        assert kills and kills[0] < 8, "the actor was not killed mid-run"
        assert ray.get(victim.info.remote()).pid != pid_before  # Ray restarted it
        ids = [fact_id for (_, fact_id) in got.traces]
        assert sorted(ids) == [f"f{i}" for i in range(8)]  # every fact once, none missing
        assert all(o.error is None for o in got.outcomes.values())
        assert len(cache) == 8


    def test_a_fact_failing_for_its_own_reason_fails_alone(self, executor: RayExecutor, tmp_path: Path) -> None:
        # logit_diff needs a distractor whose first token differs from the target's; f1's does not.
        text = """\
    name: diffs
    unknown: trace
    settings: {metric: logit_diff}
    facts:
      - {id: f0, subject: The Colosseum, relation: "{} is located in", target: Italy, distractor: France}
      - {id: f1, subject: Toyota, relation: "{} is located in", target: Japan, distractor: Japan}
    """
        fs = write_factset(tmp_path, text)
        got = prefetch(executor, every_fact(fs), TraceCache(tmp_path / "cache"))
        path = str(fs.path)
        assert (path, "f0") in got.traces and got.outcomes[(path, "f0")].error is None
        assert (path, "f1") not in got.traces
        locator = PrefetchedLocator.adopt(Locator(model=MODEL, device="cpu", use_cache=False), got)
        with pytest.raises(FactError, match="distractor"):
            locator.trace(fs.fact("f1").fact, fs)
        assert locator.trace(fs.fact("f0").fact, fs).ie == got.traces[(path, "f0")].ie


    def test_a_rerun_after_a_killed_run_resumes_from_the_cache(self, executor: RayExecutor, tmp_path: Path) -> None:
        fs = write_factset(tmp_path, factset_text(4))
        cache = TraceCache(tmp_path / "cache")

        def interrupt(progress: RayProgress) -> None:
            if progress.phase == "trace" and progress.done > 0:
                raise KeyboardInterrupt  # the driver killed after its first chunk came back

        executor.on_progress = interrupt
        with pytest.raises(KeyboardInterrupt):
            prefetch(executor, every_fact(fs), cache)
        kept = len(cache)
        assert 0 < kept < 4
        executor.on_progress = None
        got = prefetch(executor, every_fact(fs), cache)
        assert len(got.from_cache) == kept and len(got.traced_by) == 4 - kept
        assert len(got.traces) == 4


def test_an_actor_runs_the_auto_rounds_of_its_chunk_and_goes_on_from_a_trace_it_is_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`TraceWorker` (the plain class each actor wraps) under `samples: auto`: the chunk's
    facts take their first round and their rounds together; each ends with the draws and
    values of the in-process audit; a fact sent with a trace (`WorkUnit.starts`) computes
    only the draws it lacks; the cache key is the auto one."""
    from fact_locator.adaptive_samples import samples_of
    from fact_locator.audit_flow import audit_fact
    from fact_locator.scaleout.ray_actors import TraceWorker
    from fact_locator.scaleout.work import TRACE, WorkUnit
    from fact_locator.tracing.trace import Trace
    from fact_locator.tracing.tracer import Tracer

    fs = write_factset(tmp_path, factset_text(2))
    overrides = (("samples", "auto"), ("window", 2), ("kinds", ("hidden",)))
    config = LocatorConfig(model=MODEL, device="cpu", overrides=overrides, max_samples=16)
    local = Locator(model=MODEL, device="cpu", overrides=dict(overrides), use_cache=False, max_samples=16)
    expected = {spec.id: audit_fact(local, fs, spec, "trace").trace for spec in fs.facts}
    assert max(t.n_samples for t in expected.values()) == 16  # a fact that takes more than one round

    text, ids = fs.path.read_text(), tuple(s.id for s in fs.facts)
    got = TraceWorker(config, "actor-x").run(WorkUnit(TRACE, str(fs.path), text, ids, "trace"))
    for outcome in got:
        theirs, mine = Trace.from_json(outcome.trace_json), expected[outcome.fact_id]
        assert mine is not None and theirs.n_samples == mine.n_samples
        for kind, rows in mine.ie.items():
            flat = [abs(a - b) for ra, rb in zip(rows, theirs.ie[kind]) for a, b in zip(ra, rb)]
            assert max(flat) < 1e-6, f"{outcome.fact_id} {kind}: the actor's rounds differ from in-process"
        fact = fs.fact(outcome.fact_id).fact
        assert outcome.key == local.cache_key(fact, local.settings_for(fs), mine.noise, adaptive=True)

    first = Locator(model=MODEL, device="cpu", overrides=dict(overrides), use_cache=False, max_samples=8)
    start = audit_fact(first, fs, fs.facts[0], "trace").trace
    assert start is not None and start.n_samples == 8
    drawn: list[int] = []
    trace_many = Tracer.trace_many
    monkeypatch.setattr(Tracer, "trace_many", lambda self, facts, *a, **k: drawn.append(len(facts)) or trace_many(self, facts, *a, **k))
    resumed = TraceWorker(config, "actor-y").run(WorkUnit(TRACE, str(fs.path), text, ids[:1], "trace",
                                                          starts=((ids[0], start.to_json()),)))
    assert drawn == []  # no first round: it went on from the 8 draws it was sent
    assert samples_of(Trace.from_json(resumed[0].trace_json)) == expected[ids[0]].n_samples


def test_the_driver_never_loads_the_model(tmp_path: Path) -> None:
    identity = ModelIdentity("tiny-llama", "LlamaForCausalLM", 2, "ab" * 32)
    got = Prefetched(infos=[ActorInfo("actor-0", "node", 1, "cpu", identity)])
    locator = PrefetchedLocator.adopt(Locator(model=MODEL, device="cpu"), got)
    assert locator.load().identity == identity and locator.loaded_models[MODEL].device == "cpu"
    fs = write_factset(tmp_path, factset_text(1))
    with pytest.raises(UsageError, match="not sent to the Ray actors"):
        locator.trace(fs.facts[0].fact, fs)
    with pytest.raises(UsageError, match="driver does not load models"):
        locator.load("python:tests.support.fl_tiny:gpt2")


def test_actors_with_different_weights_are_a_usage_error() -> None:
    infos = [ActorInfo(f"actor-{i}", "node", i, "cpu", ModelIdentity("m", "A", 2, fp * 64))
             for i, fp in enumerate("ab")]
    executor = RayExecutor(CONFIG, infos=infos)
    with pytest.raises(UsageError, match="different weights"):
        executor._check_infos()


def test_without_ray_the_executor_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from fact_locator.scaleout.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'fact-locator\[ray\]'"):
        import_ray()




# -- the plugin: pytest --fl-executor ray ---------------------------------------------------------
@pytest.fixture
def fl(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_ray: None) -> FL:
    import_heavy_modules()
    return FL(pytester, tmp_path, monkeypatch)


def test_pytest_on_ray_gives_the_in_process_results_and_reruns_from_the_cache(fl: FL) -> None:
    fl.factset("geo", GEO)
    on_ray = fl.run("--fl-executor", "ray", "--fl-ray-workers", "2", "--fl-severed", "--fl-json", "ray.json")
    on_ray.assert_outcomes(passed=3, xfailed=1)
    on_ray.stdout.fnmatch_lines(["fact-locator: ray: 2/2 facts traced, 2/2 actors alive"])
    assert sorted(fl.traced()) == ["colosseum", "toyota"]  # each fact traced once, on the actors
    here = fl.run("--fl-no-cache", "--fl-severed", "--fl-json", "here.json")
    here.assert_outcomes(passed=3, xfailed=1)
    ray_results, here_results = fl.results("ray.json"), fl.results("here.json")
    assert ray_results["model"]["fingerprint"] == here_results["model"]["fingerprint"]
    for mine, theirs in zip(here_results["factsets"][0]["facts"], ray_results["factsets"][0]["facts"]):
        assert [o["outcome"] for o in mine["outcomes"]] == [o["outcome"] for o in theirs["outcomes"]]
        for kind, rows in mine["trace"]["ie"].items():
            flat = [abs(a - b) for ra, rb in zip(rows, theirs["trace"]["ie"][kind]) for a, b in zip(ra, rb)]
            assert max(flat) < 1e-6, f"{mine['id']} {kind}: Ray and in-process traces differ"
    for mine, theirs in zip(here_results["factsets"][0]["facts"], ray_results["factsets"][0]["facts"]):
        assert theirs["worker"] in ("ray actor-0", "ray actor-1") and theirs["device"] == "cpu"  # who traced it
        for kind, share in mine["severed"]["shares"].items():  # --fl-severed: computed on the actors
            assert abs(theirs["severed"]["shares"][kind] - share) < 1e-6, f"{mine['id']} {kind}: severed differs"
    assert ray_results["factsets"][0]["aggregate"]["ate"] == pytest.approx(here_results["factsets"][0]["aggregate"]["ate"], abs=1e-6)
    fl.log.unlink()
    again = fl.run("--fl-executor", "ray", "--fl-ray-workers", "2")
    again.assert_outcomes(passed=3, xfailed=1)
    assert fl.traced() == []  # nothing traced again: the driver found every key in the cache


def test_samples_auto_on_ray_runs_the_rounds_on_the_actors_with_the_in_process_draws(fl: FL) -> None:
    """The actors run the rounds of `--fl-samples auto` (the extensions run beside the model
    and the first draws; docs/scaling.md): the same draws per fact, traces and outcomes as
    in-process; a rerun computes nothing; a cache whose traces are still open (a run capped
    at 8 draws) goes back to the actors, which extend them to the in-process result."""
    # No per-fact expectations: a fact stops when its TE and peak settle (they do not at 8 draws here).
    fl.factset("bare", "name: bare\nunknown: trace\nsettings: {kinds: [hidden, mlp], window: 2}\n"
                       "aggregate:\n  - ate: \">= -1\"\nfacts:\n"
                       "  - {id: colosseum, subject: The Colosseum, relation: \"{} is located in the country of\", target: Italy}\n"
                       "  - {id: toyota, subject: Toyota, relation: \"{} was founded in the country of\", target: Japan}\n")
    auto = ("--fl-samples", "auto", "--fl-max-samples", "16")
    here = fl.run(*auto, "--fl-no-cache", "--fl-json", "here.json")
    on_ray = fl.run("--fl-executor", "ray", "--fl-ray-workers", "2", *auto, "--fl-json", "ray.json")
    assert on_ray.parseoutcomes() == here.parseoutcomes()

    def draws(name: str) -> dict[str, int]:
        return {f["id"]: f["trace"]["settings"]["samples"] for f in fl.results(name)["factsets"][0]["facts"]}

    assert draws("ray.json") == draws("here.json")
    assert max(draws("here.json").values()) == 16  # one fact at least went past the first round
    for mine, theirs in zip(fl.results("here.json")["factsets"][0]["facts"], fl.results("ray.json")["factsets"][0]["facts"]):
        assert [o["outcome"] for o in mine["outcomes"]] == [o["outcome"] for o in theirs["outcomes"]]
        for kind, rows in mine["trace"]["ie"].items():
            flat = [abs(a - b) for ra, rb in zip(rows, theirs["trace"]["ie"][kind]) for a, b in zip(ra, rb)]
            assert max(flat) < 1e-6, f"{mine['id']} {kind}: Ray and in-process traces differ"
    fl.log.unlink()
    fl.run("--fl-executor", "ray", "--fl-ray-workers", "2", *auto)
    assert fl.traced() == []  # every trace's rounds were done: nothing goes to the actors
    capped = ("--fl-cache-dir", str(fl.path / "capped"))
    fl.run("--fl-samples", "auto", "--fl-max-samples", "8", *capped)
    fl.run("--fl-executor", "ray", "--fl-ray-workers", "2", *auto, *capped, "--fl-json", "resumed.json")
    assert draws("resumed.json") == draws("here.json")


def test_ray_with_xdist_a_device_map_or_without_the_extra_is_a_usage_error(fl: FL, monkeypatch: pytest.MonkeyPatch) -> None:
    fl.factset("geo", GEO)
    with_n = fl.run("--fl-executor", "ray", "-n", "2")
    assert with_n.ret == pytest.ExitCode.USAGE_ERROR
    with_n.stderr.fnmatch_lines(["ERROR: fact-locator: --fl-executor ray traces on Ray actors: drop -n*"])
    mapped = fl.run("--fl-executor", "ray", "--fl-device-map", "auto")
    assert mapped.ret == pytest.ExitCode.USAGE_ERROR
    mapped.stderr.fnmatch_lines(["ERROR: fact-locator: --fl-device-map auto: Ray actors take one GPU each*"])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    missing = fl.run("--fl-executor", "ray")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: fact-locator: --fl-executor ray needs Ray: pip install 'fact-locator[ray]'"])


def test_a_fact_with_nan_in_its_trace_fails_its_items_on_ray_and_the_run_goes_on(fl: FL) -> None:
    fl.factset("poisoned", """\
name: poisoned
unknown: trace
expect:
  - te: ">= -1"
facts:
  - {id: colosseum, subject: The Colosseum, relation: "{} is located in the country of", target: Italy}
  - {id: zorblax, subject: Zorblax, relation: "{} was founded in the country of", target: Japan}
""")
    result = fl.run("--fl-executor", "ray", "--fl-ray-workers", "2", "--fl-model", "python:fl_tiny:llama_nan_on_zorblax",
                    "--fl-json", "ray.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*zorblax*non-finite*NaN*"])
    facts = {f["id"]: f for f in fl.results("ray.json")["factsets"][0]["facts"]}
    assert facts["colosseum"]["status"] == "traced" and facts["zorblax"]["status"] == "error"
    assert "NaN" in facts["zorblax"]["status_reason"]


def test_a_model_that_does_not_load_on_the_actors_is_one_usage_error(fl: FL) -> None:
    fl.factset("geo", GEO)
    result = fl.run("--fl-executor", "ray", "--fl-model", "python:fl_tiny:broken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: fact-locator: model 'python:fl_tiny:broken' does not load on Ray actor-0: *no weights here*"])
