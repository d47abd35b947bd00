"""`fact-locator merge`: the results of `--fl-shard` jobs joined into one run.

Shards trace disjoint facts and skip aggregates (an aggregate needs every fact of its set), so
the merge recomputes each fact set's aggregate over the union of its traced facts, in the
file's order, and decides the set's aggregate expectations, read again from the fact-set file,
on it: never an average of per-shard aggregates.

A fact in two parts is an error, not deduplicated: it means the parts are not the shards of one
N (1/2 with 1/3, a part given twice, a whole run with a shard), and such parts may also leave a
fact out, which no dedup would notice. For the same reason the merge insists on every shard
K/N of one N once, and on every fact of a set with aggregate expectations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fact_locator.errors import ResultsError
from fact_locator.results import AuditOutcome, RunResults, merge_results

if TYPE_CHECKING:
    from fact_locator.aggregate import Aggregate
    from fact_locator.expectations.reading import ExpectationSpec

__all__ = ["MergedRun", "check_shards", "merge_shards"]

_AGGREGATE_NODE = "aggregate"


@dataclass
class MergedRun:
    results: RunResults
    failed: list[AuditOutcome]


def check_shards(runs: Sequence[RunResults], names: Sequence[str]) -> None:
    """Raise ResultsError unless the parts are shards 1..N of one N, each once, or none is a
    shard (results of separate runs, e.g. of different fact sets), and no fact is in two parts."""
    shards = [run.settings.get("shard") for run in runs]
    if any(s is not None for s in shards):
        seen: dict[str, str] = {}
        n_first: int | None = None
        for shard, name in zip(shards, names):
            if shard is None:
                raise ResultsError(f"{name}: not a shard (no --fl-shard), cannot merge with shards")
            n = int(str(shard).partition("/")[2])
            if n_first is not None and n != n_first:
                raise ResultsError(f"{name}: shard {shard} is not of the same N as {names[0]}'s {shards[0]}")
            n_first = n
            if shard in seen:
                raise ResultsError(f"{name}: shard {shard} given twice (also {seen[shard]})")
            seen[shard] = name
        missing = [f"{k}/{n_first}" for k in range(1, (n_first or 0) + 1) if f"{k}/{n_first}" not in seen]
        if missing:
            raise ResultsError(f"shard {', '.join(missing)} missing: give the results of every shard")
    owner: dict[tuple[str, str], int] = {}
    for i, run in enumerate(runs):
        for fs in run.factsets:
            for fact in fs.facts:
                other = owner.setdefault((fs.path, fact.id), i)
                if other != i:
                    raise ResultsError(f"{fs.path}: fact {fact.id!r} is in {names[other]} and in {names[i]}; "
                                       "were the parts the shards of one N?")


def merge_shards(paths: Sequence[Path], root: Path = Path(".")) -> MergedRun:
    """Merge the results files `paths`; fact sets are read under `root` (the shards' rootdir)."""
    from fact_locator.aggregate import aggregate
    from fact_locator.factset import load_factset

    names = [str(p) for p in paths]
    runs = [RunResults.load(p) for p in paths]
    check_shards(runs, names)
    merged = merge_results(runs, sources=names)
    merged.settings["shard"] = None
    merged.settings["merged_parts"] = names
    failed: list[AuditOutcome] = []
    for fs in merged.factsets:
        file = root / fs.path
        if not file.is_file():
            raise ResultsError(f"{file}: fact set not found; run merge in the shards' rootdir or give --rootdir")
        factset = load_factset(file)
        order = {spec.id: i for i, spec in enumerate(factset.facts)}
        if factset.aggregate_expectations:
            present = {f.id for f in fs.facts}
            absent = [fid for fid in order if fid not in present]
            if absent:
                raise ResultsError(f"{fs.path}: fact {absent[0]!r} is in no part ({len(absent)} missing); "
                                   "its aggregate needs every fact (a shard deselected with -k/-m?)")
        # The file's order, as in one run: the aggregate's sums then add in the same order.
        fs.facts.sort(key=lambda f: order.get(f.id, len(order)))
        traces = [f.trace for f in fs.facts if f.trace is not None]
        fs.aggregate = aggregate(traces, intervals=True) if traces else None
        level = _level(merged.settings, factset.settings)
        fs.outcomes = [_decide(fs.path, factset.name, name, exp, fs.aggregate, level,
                               str(merged.settings.get("undecided") or "fail"))
                       for name, exp in _unique_names(factset.aggregate_expectations)]
        failed += [o for o in fs.outcomes if "failed" in (o.outcome, o.counted_as)]
    return MergedRun(merged, failed)


def _level(settings: dict[str, Any], factset_settings: dict[str, Any]) -> float:
    """The level one run decided the set's aggregate items at: the run's --fl-confidence (or
    ini), else the fact set's `confidence`, else the default (plugin/verdict_level.py's rule)."""
    from fact_locator.expectations import DEFAULT_LEVEL

    if settings.get("sources", {}).get("confidence") in ("cli", "ini") and settings.get("confidence") is not None:
        return float(settings["confidence"])
    return float(factset_settings.get("confidence", DEFAULT_LEVEL))


def _decide(path: str, set_name: str, name: str, exp: ExpectationSpec, agg: Aggregate | None, level: float,
            undecided: str) -> AuditOutcome:
    """The outcome one run's aggregate item would have had (skipped, xfail and undecided
    included): decided at `level`, an undecided one counted as the run's --fl-undecided."""
    from fact_locator.expectations import Verdict, decide

    nodeid = f"{path}::{_AGGREGATE_NODE}::{name}"
    if agg is None:
        return AuditOutcome(nodeid, exp.id, "skipped", f"fact set {set_name}: no known fact to aggregate")
    result = decide(exp.expectation, agg, level=level)
    if result.verdict is Verdict.UNDECIDED:
        counted = {"xfail": "xfailed", "skip": "skipped"}.get(undecided, "failed")
        return AuditOutcome(nodeid, exp.id, "undecided", result.message, counted_as=counted)
    if exp.xfail:
        return AuditOutcome(nodeid, exp.id, "xpassed" if result.passed else "xfailed", result.message)
    return AuditOutcome(nodeid, exp.id, "passed" if result.passed else "failed", result.message)


def _unique_names(specs: Sequence[ExpectationSpec]) -> list[tuple[str, ExpectationSpec]]:
    """The item names of one run's collection: a repeated id gets -2, -3, ..."""
    seen: dict[str, int] = {}
    named = []
    for exp in specs:
        seen[exp.id] = seen.get(exp.id, 0) + 1
        named.append((exp.id if seen[exp.id] == 1 else f"{exp.id}-{seen[exp.id]}", exp))
    return named
