"""Hooks fact-locator calls; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_fl_trace(config: pytest.Config, fact: Any, trace: Any, cached: bool) -> None:
    """Called after each fact is traced (`cached=False`: computed now and already written
    to the trace cache) or read from the trace cache (`cached=True`); once per fact and
    session (per xdist worker). `fact` is a fact_locator.facts.Fact, `trace` a Trace."""
