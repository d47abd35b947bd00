"""`--fl-shard K/N`: one fixed 1/N of the facts per CI job; `fact-locator merge` joins the parts.

A fact goes to shard `sha256(<fact set path>::<fact id>) mod N`: the same on every machine
and independent of file order, so N jobs cover every fact exactly once. Aggregate items need
every fact of their set, so a shard leaves them to the merge. `ShardFilter` is a plugin object
of its own, registered only when the option is set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fact_locator.plugin.collection import CASE_KEY

__all__ = ["ShardFilter", "parse_k_of_n", "shard_of", "split_items"]


def parse_k_of_n(value: str) -> tuple[int, int]:
    """(K, N) of a value already checked by `settings.parse_shard`."""
    k, _, n = value.partition("/")
    return int(k), int(n)


def shard_of(factset_path: str, fact_id: str, n: int) -> int:
    """The 1-based shard of one fact among `n`. `factset_path` is relative to the rootdir, so
    checkouts in different folders agree."""
    digest = hashlib.sha256(f"{factset_path}::{fact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def split_items(items: list[pytest.Item], shard: str) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected) for shard `K/N`. Items that audit no fact set (plain tests) stay."""
    kept, others, aggregates = _split(items, *parse_k_of_n(shard))
    return kept, others + aggregates


def _split(items: list[pytest.Item], k: int, n: int) -> tuple[list[pytest.Item], list[pytest.Item], list[pytest.Item]]:
    kept: list[pytest.Item] = []
    others: list[pytest.Item] = []
    aggregates: list[pytest.Item] = []
    for item in items:
        case = item.stash.get(CASE_KEY, None)
        if case is None:
            kept.append(item)
        elif case.aggregate or case.fact_id is None:
            aggregates.append(item)
        elif shard_of(case.factset_path, case.fact_id, n) == k:
            kept.append(item)
        else:
            others.append(item)
    return kept, others, aggregates


class ShardFilter:
    """Deselects the items of other shards' facts and the aggregate items, and says so."""

    def __init__(self, shard: str):
        self.k, self.n = parse_k_of_n(shard)
        self.summary = ""
        self.deselected = 0

    def pytest_report_header(self) -> list[str]:
        return [f"fact-locator shard: {self.k}/{self.n} (a hash of fact-set path and fact id); "
                "aggregates are left to `fact-locator merge`"]

    @pytest.hookimpl(trylast=True)  # after the plugin's own de-duplication and -k/-m
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept, others, aggregates = _split(items, self.k, self.n)
        if others or aggregates:
            config.hook.pytest_deselected(items=others + aggregates)
        items[:] = kept
        facts = {(c.factset_path, c.fact_id) for c in (i.stash.get(CASE_KEY, None) for i in kept) if c is not None}
        self.deselected = len(others) + len(aggregates)
        self.summary = (f"fact-locator shard {self.k}/{self.n}: {len(kept)} items of {len(facts)} facts kept; "
                        f"deselected {len(others)} items of other shards' facts and {len(aggregates)} aggregate "
                        "items (decided over all facts by `fact-locator merge`)")

    def pytest_report_collectionfinish(self, config: pytest.Config, start_path: Path,
                                       items: list[pytest.Item]) -> str | None:
        return self.summary or None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # A shard that drew no fact (more shards than facts) is not a failed CI job; it has
        # still written its --fl-json, which the merge counts as that shard.
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.deselected:
            session.exitstatus = pytest.ExitCode.OK
