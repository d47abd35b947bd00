"""Merging the results of parts of one run into one results file.

The parts are the results of pytest-xdist workers (the plugin's controller merges them) or,
for a `merge` command, of CI shards. Fact sets are matched by path, facts by id and outcomes
by node id; a trace, severed paths or an aggregate is taken from whichever part has it.
Parts that traced with a different model, different trace settings or different library
versions are not one run: `merge_results` refuses them with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from fact_locator.errors import ResultsError
from fact_locator.results.schema import FactResult, FactSetResult, RunResults

__all__ = ["SETTINGS_THAT_MUST_MATCH", "merge_conflict", "merge_results"]

# What decides a trace's numbers or a verdict. Output paths, the cache folder, the device,
# the executor and the counts of traced facts may differ between the parts of one run.
SETTINGS_THAT_MUST_MATCH: tuple[str, ...] = (
    "model", "dtype", "samples", "seed", "window", "noise", "kinds", "corruption", "metric", "method", "unknown",
    "baseline_max_layer_shift", "baseline_max_ate_drop", "baseline_max_te_drop", "baseline_allow_noise_change",
)


def merge_results(runs: Sequence[RunResults], sources: Sequence[str] | None = None) -> RunResults:
    """One `RunResults` from the results of parts of one run, in the given order; the inputs
    are left unchanged. `sources` names each part in error messages (e.g. its file).

    Raises ResultsError when there is nothing to merge or a part differs from the first in
    its model, a setting of `SETTINGS_THAT_MUST_MATCH`, or a library version."""
    if not runs:
        raise ResultsError("no results to merge")
    names = list(sources) if sources is not None else [f"results #{i + 1}" for i in range(len(runs))]
    if len(names) != len(runs):
        raise ValueError(f"{len(runs)} results but {len(names)} sources")
    for run, name in zip(runs[1:], names[1:]):
        conflict = merge_conflict(runs[0], run)
        if conflict is not None:
            raise ResultsError(f"{name}: cannot merge with {names[0]}: {conflict}")
    merged = copy.deepcopy(runs[0])
    for run in runs[1:]:
        _fold(merged, copy.deepcopy(run))
    return merged


def merge_conflict(first: RunResults, other: RunResults) -> str | None:
    """Why `other` is not a part of the same run as `first`, or None. Only what both record
    is compared: a model fingerprint where both have one (an xdist controller that loaded no
    model has only the spec), settings and versions by key."""
    if first.version != other.version:
        return f"results schema version {other.version} differs from {first.version}"
    fingerprints = first.model.get("fingerprint"), other.model.get("fingerprint")
    if None not in fingerprints and fingerprints[0] != fingerprints[1]:
        return (f"model {other.model.get('spec')!r} (fingerprint {str(fingerprints[1])[:12]}) differs from "
                f"{first.model.get('spec')!r} (fingerprint {str(fingerprints[0])[:12]})")
    if None in fingerprints and first.model.get("spec") != other.model.get("spec"):
        return f"model {other.model.get('spec')!r} differs from {first.model.get('spec')!r}"
    for name in SETTINGS_THAT_MUST_MATCH:
        if _differs(first.settings, other.settings, name):
            return f"setting {name} = {other.settings[name]!r} differs from {first.settings[name]!r}"
    for name in sorted(set(first.versions) & set(other.versions)):
        if first.versions[name] != other.versions[name]:
            return f"{name} version {other.versions[name]} differs from {first.versions[name]}"
    return None


def _differs(first: dict[str, Any], other: dict[str, Any], key: str) -> bool:
    return key in first and key in other and first[key] != other[key]


def _fold(base: RunResults, other: RunResults) -> None:
    """Fold `other` into `base` (changing `base`)."""
    by_path = {fs.path: fs for fs in base.factsets}
    for fs in other.factsets:
        mine = by_path.get(fs.path)
        if mine is None:
            base.factsets.append(fs)
            by_path[fs.path] = fs
        else:
            _fold_factset(mine, fs)
    seen = {o.nodeid for o in base.outcomes}
    base.outcomes += [o for o in other.outcomes if o.nodeid not in seen]
    if "fingerprint" not in base.model and "fingerprint" in other.model:
        base.model = dict(other.model)
    factset_settings = base.settings.setdefault("factset_settings", {})
    for name, value in other.settings.get("factset_settings", {}).items():
        factset_settings.setdefault(name, value)
    stats = other.settings.get("stats")
    if stats:
        mine_stats = base.settings.setdefault("stats", {})
        for k, v in stats.items():
            mine_stats[k] = mine_stats.get(k, 0) + v
    base.started_at = min(base.started_at, other.started_at)
    base.finished_at = max(base.finished_at, other.finished_at)


def _fold_factset(mine: FactSetResult, fs: FactSetResult) -> None:
    if not mine.description:
        mine.description = fs.description
    facts = {f.id: f for f in mine.facts}
    for fact in fs.facts:
        have = facts.get(fact.id)
        if have is None:
            mine.facts.append(fact)
            facts[fact.id] = fact
        else:
            _fold_fact(have, fact)
    if mine.aggregate is None:
        mine.aggregate = fs.aggregate
    seen = {o.nodeid for o in mine.outcomes}
    mine.outcomes += [o for o in fs.outcomes if o.nodeid not in seen]


def _fold_fact(have: FactResult, fact: FactResult) -> None:
    if have.trace is None and fact.trace is not None:
        have.trace = fact.trace
    if have.severed is None and fact.severed is not None:
        have.severed = fact.severed
    # A part that only ran the fact's expectations holds a placeholder (no subject, status
    # "error: not traced"); the part that traced it knows better.
    if have.status != "traced" and fact.status == "traced" or not have.subject:
        have.status, have.status_reason = fact.status, fact.status_reason
    if not have.subject:
        have.subject, have.relation, have.target, have.tags = fact.subject, fact.relation, fact.target, fact.tags
    seen = {o.nodeid for o in have.outcomes}
    have.outcomes += [o for o in fact.outcomes if o.nodeid not in seen]
