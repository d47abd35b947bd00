"""`fact-locator merge`: the results of `--fl-shard` jobs joined into one run.

Shards trace disjoint facts and skip aggregates (an aggregate needs every fact of its set), so
the merge recomputes each fact set's aggregate over the union of its traced facts and decides
the set's aggregate expectations, read again from the fact-set file, on it: never an average
of per-shard aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fact_locator.errors import ResultsError
from fact_locator.results import AuditOutcome, RunResults, merge_results

__all__ = ["MergedRun", "merge_shards"]

_AGGREGATE_NODE = "aggregate"


@dataclass
class MergedRun:
    results: RunResults
    failed: list[AuditOutcome]


def merge_shards(paths: Sequence[Path]) -> MergedRun:
    from fact_locator.aggregate import aggregate
    from fact_locator.expectations import check
    from fact_locator.factset import load_factset

    runs = [RunResults.load(p) for p in paths]
    merged = merge_results(runs, sources=[str(p) for p in paths])
    failed: list[AuditOutcome] = []
    for fs in merged.factsets:
        ids = [f.id for f in fs.facts]
        if len(ids) != len(set(ids)):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ResultsError(f"{fs.path}: fact {twice[0]!r} is in more than one part; were the shards of one N?")
        if not Path(fs.path).is_file():
            raise ResultsError(f"{fs.path}: fact set not found; run merge from the folder the shards ran in")
        factset = load_factset(fs.path)
        traces = [f.trace for f in fs.facts if f.trace is not None]
        fs.aggregate = aggregate(traces, intervals=True) if traces else None
        fs.outcomes = []
        for exp in factset.aggregate_expectations:
            nodeid = f"{fs.path}::{_AGGREGATE_NODE}::{exp.id}"
            if fs.aggregate is None:
                outcome = AuditOutcome(nodeid, exp.id, "failed", f"{exp.id}: no traced fact in the merged parts")
            else:
                result = check(exp.expectation, fs.aggregate)
                verdict = "passed" if result.passed else ("xfailed" if exp.xfail else "failed")
                outcome = AuditOutcome(nodeid, exp.id, verdict, result.message)
            fs.outcomes.append(outcome)
            if outcome.outcome == "failed":
                failed.append(outcome)
    return MergedRun(merged, failed)
