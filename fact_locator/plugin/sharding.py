"""`--fl-shard K/N`: one fixed 1/N of the facts per CI job; `fact-locator merge` joins the parts.

A fact goes to shard `sha256(<fact set path>::<fact id>) mod N`: the same on every machine
and independent of file order, so N jobs cover every fact exactly once. Aggregate items need
every fact of their set, so a shard leaves them to the merge.
"""

from __future__ import annotations

import hashlib

import pytest

from fact_locator.plugin.collection import CASE_KEY

__all__ = ["parse_k_of_n", "shard_of", "split_items"]


def parse_k_of_n(value: str) -> tuple[int, int]:
    k, _, n = value.partition("/")
    return int(k), int(n)


def shard_of(factset_path: str, fact_id: str, n: int) -> int:
    """The 1-based shard of one fact among `n`."""
    digest = hashlib.sha256(f"{factset_path}::{fact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def split_items(items: list[pytest.Item], shard: str) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected) for shard `K/N`. Items that audit no fact set (plain tests) stay."""
    k, n = parse_k_of_n(shard)
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        case = item.stash.get(CASE_KEY, None)
        if case is None:
            kept.append(item)
        elif case.aggregate or case.fact_id is None:
            dropped.append(item)
        elif shard_of(case.factset_path, case.fact_id, n) == k:
            kept.append(item)
        else:
            dropped.append(item)
    return kept, dropped
