"""What a `Locator` tells a listener while it traces: `TraceProgress`, one event before the
first restoration batch (0 sites done) and one after each batch. The pytest plugin draws them
(`fact_locator.plugin.progress`). Plain data: importing this module imports neither torch nor
pytest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressListener", "TraceProgress"]


@dataclass(frozen=True)
class TraceProgress:
    """How far the trace of one fact has come. `together`: the facts whose restoration runs
    share these forwards (1: the fact alone); the sites count all of them."""

    fact: str
    factset: str | None
    sites_done: int
    sites_total: int
    together: int = 1

    @property
    def label(self) -> str:
        """'geo: colosseum', or 'geo: colosseum +2' when two more facts are traced with it."""
        name = f"{self.factset}: {self.fact}" if self.factset else self.fact
        return name if self.together == 1 else f"{name} +{self.together - 1}"

    @property
    def started(self) -> bool:
        return self.sites_done == 0

    @property
    def finished(self) -> bool:
        return self.sites_done >= self.sites_total

    @property
    def counts(self) -> str:
        return f"sites {self.sites_done}/{self.sites_total}"


# Called with each event, in the thread that traces; it should return quickly.
ProgressListener = Callable[[TraceProgress], None]
