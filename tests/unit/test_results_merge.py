"""merge_results joins the results of parts of one run (xdist workers, CI shards) into one
file, and refuses parts that traced with another model, other settings or other versions."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from fact_locator.errors import ResultsError
from fact_locator.results import RunResults, merge_conflict, merge_results

WHOLE = RunResults.load(Path(__file__).parent / "data" / "results_written_before_the_results_package.json")


def shard(keep: str, *, aggregate: bool) -> RunResults:
    """The part of WHOLE that traced and audited only fact `keep` (and maybe the aggregate)."""
    part = copy.deepcopy(WHOLE)
    (geo,) = part.factsets
    geo.facts = [f for f in geo.facts if f.id == keep]
    if not aggregate:
        geo.aggregate, geo.outcomes = None, []
    return part


def test_shards_of_one_run_merge_into_the_whole_run():
    first, second = shard("colosseum", aggregate=False), shard("toyota", aggregate=True)
    merged = merge_results([first, second])
    assert merged.to_dict()["factsets"] == WHOLE.to_dict()["factsets"]
    assert merged.counts() == WHOLE.counts()
    assert merged.settings["stats"] == {k: 2 * v for k, v in WHOLE.settings["stats"].items()}  # each part's counts added
    assert [f.id for f in first.factsets[0].facts] == ["colosseum"]  # the inputs are left as they were


def test_a_fact_seen_by_two_parts_keeps_the_trace_and_every_outcome_once():
    traced = shard("colosseum", aggregate=False)
    audited_only = copy.deepcopy(traced)
    fact = audited_only.factsets[0].facts[0]
    fact.trace, fact.severed, fact.subject, fact.status, fact.status_reason = None, None, "", "error", "not traced"
    merged = merge_results([audited_only, traced])
    (merged_fact,) = merged.factsets[0].facts
    assert merged_fact.trace is not None and merged_fact.severed is not None
    assert (merged_fact.subject, merged_fact.status) == ("The Colosseum", "traced")
    assert [o.nodeid for o in merged_fact.outcomes] == [o.nodeid for o in fact.outcomes]


def test_an_xdist_controller_that_loaded_no_model_takes_the_workers_model():
    controller = RunResults(model={"spec": WHOLE.model["spec"]}, settings=dict(WHOLE.settings), versions=WHOLE.versions,
                            started_at=WHOLE.started_at, finished_at=WHOLE.finished_at)
    merged = merge_results([controller, WHOLE])
    assert merged.model == WHOLE.model
    assert merged.to_dict()["factsets"] == WHOLE.to_dict()["factsets"]


def test_the_earliest_start_and_the_latest_finish_are_kept():
    early, late = copy.deepcopy(WHOLE), copy.deepcopy(WHOLE)
    early.started_at, early.finished_at = "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00"
    late.started_at, late.finished_at = "2026-01-01T00:00:30+00:00", "2026-01-01T00:05:00+00:00"
    merged = merge_results([late, early])
    assert (merged.started_at, merged.finished_at) == ("2026-01-01T00:00:00+00:00", "2026-01-01T00:05:00+00:00")


@pytest.mark.parametrize(("change", "reason"), [
    (lambda r: r.model.update(fingerprint="0" * 64), "model 'python:fl_tiny:llama' (fingerprint 000000000000) differs"),
    (lambda r: r.model.update(spec="smollm2-135m", fingerprint=None), "model 'smollm2-135m' differs from"),
    (lambda r: r.settings.update(samples=10), "setting samples = 10 differs from 2"),
    (lambda r: r.settings.update(corruption="str"), "setting corruption = 'str' differs from 'gaussian'"),
    (lambda r: r.versions.update(torch="1.0"), "torch version 1.0 differs from"),
])
def test_parts_of_different_runs_are_refused_with_the_reason(change, reason):
    other = copy.deepcopy(WHOLE)
    change(other)
    assert reason in (merge_conflict(WHOLE, other) or "")
    with pytest.raises(ResultsError, match=r"^shard-2\.json: cannot merge with shard-1\.json: ") as info:
        merge_results([WHOLE, other], ["shard-1.json", "shard-2.json"])
    assert reason in str(info.value)


def test_paths_devices_and_the_executor_may_differ_between_parts():
    other = copy.deepcopy(WHOLE)
    other.settings.update(json="/elsewhere/r.json", html=None, cache_dir="/other/cache", device="cuda:1",
                          executor="ray", factsets="more/*.yaml")
    assert merge_conflict(WHOLE, other) is None


def test_nothing_to_merge_is_an_error():
    with pytest.raises(ResultsError, match="no results to merge"):
        merge_results([])
