"""pytest-xdist support (registered only when xdist is installed), syrupy's way:
each worker puts its results (JSON text) in `config.workeroutput` at session finish, and
the controller merges them as each worker goes down, so one results file comes out. The
controller also tells each worker the --dist mode."""

from __future__ import annotations

from typing import Any

import pytest

from fact_locator.plugin.session import DIST_KEY, WORKER_OUTPUT_KEY, FactLocatorSession

__all__ = ["XdistMerge", "is_worker", "publish"]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def publish(config: pytest.Config, fl: FactLocatorSession) -> None:
    """In a worker: hand this worker's results to the controller."""
    config.workeroutput[WORKER_OUTPUT_KEY] = fl.worker_payload()  # type: ignore[attr-defined]


class XdistMerge:
    """Controller-side hooks."""

    def __init__(self, fl: FactLocatorSession):
        self.fl = fl

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if payload:
            self.fl.merge_worker_payload(payload)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each worker the --dist mode (its own option says "no"): whether all items of
        a fact set come to one worker decides whether it may trace a set's facts together
        (otherwise another worker would trace them again)."""
        node.workerinput[DIST_KEY] = self.fl.config.getoption("dist", "no")
