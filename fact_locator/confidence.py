"""Bootstrap confidence intervals: over facts for ATE / AIE, over noise samples for one fact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["Interval", "aie_interval", "ate_interval", "bootstrap_mean"]

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval of a mean."""

    estimate: float
    low: float
    high: float
    level: float
    n: int
    resamples: int

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}] at {self.level:.0%}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_mean(values: Sequence[float], level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean; seeded, so the same inputs give the same interval.
    The values are sorted first, so the interval depends on which facts there are, not on
    their order in a file or a merge of shards."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level!r}")
    data = np.sort(np.asarray(values, dtype=np.float64))
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(data.mean()), float(low), float(high), level, int(data.size), resamples)


def ate_interval(traces: Sequence[Trace], level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """ATE with a bootstrap interval over facts."""
    return bootstrap_mean([t.te for t in traces], level, resamples, seed)


def aie_interval(
    traces: Sequence[Trace],
    kind: str,
    category: TokenCategory | str,
    layer: int | None = None,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """AIE of `kind` at `category` and `layer` (default: the layer where the mean peaks),
    resampling facts; each fact contributes the mean over its positions in the category.
    The layer is chosen once, from the same data, and not re-chosen in each resample: the
    interval is that of the AIE at that layer, not of the peak AIE over layers."""
    per_fact: list[list[float]] = []
    for trace in traces:
        positions = trace.positions(category)
        if positions:
            grid = trace.grid(kind)
            per_fact.append([sum(grid[l][p] for p in positions) / len(positions) for l in range(trace.n_layers)])
    if not per_fact:
        raise ValueError(f"no fact has a token in category {TokenCategory(category).value!r}")
    if layer is None:
        n_layers = len(per_fact[0])
        layer = max(range(n_layers), key=lambda l: sum(row[l] for row in per_fact))
    return bootstrap_mean([row[layer] for row in per_fact], level, resamples, seed)
