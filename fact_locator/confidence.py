"""Bootstrap confidence intervals: over facts for ATE / AIE, over noise samples for one fact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["Interval", "PeakInterval", "aie_interval", "ate_interval", "bootstrap_mean", "peak_aie_interval"]

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


@dataclass(frozen=True)
class PeakInterval:
    """The peak AIE over layers with a bootstrap interval that re-chooses the peak layer in
    every resample (so it covers the layer choice); `layer` is the peak of all the facts and
    `layer_share` the share of resamples whose peak is that layer."""

    interval: Interval
    layer: int
    layer_share: float

    def to_dict(self) -> dict[str, Any]:
        return self.interval.to_dict() | {"layer": self.layer, "layer_share": self.layer_share}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeakInterval:
        fields = {k: v for k, v in data.items() if k not in ("layer", "layer_share")}
        return cls(Interval(**fields), int(data["layer"]), float(data["layer_share"]))


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


def two_level_bootstrap_mean(per_fact_draws: Sequence[Sequence[float]], level: float = 0.95,
                             resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean over facts of each fact's mean over its noise draws,
    resampling at both levels: the facts (with replacement), then within each drawn fact its
    draws (with replacement). The interval so covers both which facts were audited and which
    noise each one drew (an aggregate verdict, docs/verdicts.md). Seeded; the facts are sorted
    by their draws first, so the order they came in does not matter."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level!r}")
    facts = sorted((tuple(float(x) for x in draws) for draws in per_fact_draws if len(draws)))
    if not facts:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    # One fact mean per (resample, fact drawn): draws resampled within the fact drawn.
    picked = rng.integers(0, len(facts), size=(resamples, len(facts)))
    fact_means = np.empty((resamples, len(facts)), dtype=np.float64)
    for index, draws in enumerate(facts):
        rows, cols = np.nonzero(picked == index)
        if rows.size:
            values = np.asarray(draws, dtype=np.float64)
            fact_means[rows, cols] = values[rng.integers(0, values.size, size=(rows.size, values.size))].mean(axis=1)
    means = fact_means.mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    estimate = float(np.mean([np.mean(d) for d in facts]))
    return Interval(estimate, float(low), float(high), level, len(facts), resamples)


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
    interval is that of the AIE at that layer, not of the peak AIE over layers
    (`peak_aie_interval` is that one)."""
    per_fact = fact_curves(traces, kind, category)
    if layer is None:
        layer = peak_layer(per_fact)
    return bootstrap_mean([row[layer] for row in per_fact], level, resamples, seed)


def peak_aie_interval(
    traces: Sequence[Trace],
    kind: str,
    category: TokenCategory | str,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PeakInterval:
    """The peak over layers of the AIE of `kind` at `category`, with a percentile bootstrap
    over facts that takes the peak of each resample's mean curve, at whatever layer it is.

    Each resample's peak is at least its value at the layer `aie_interval` fixes, so both
    ends are at least that interval's; with one layer peaking in every resample the two are
    equal. It is usually wider (a steady layer with a noisier rival above it now and then)
    but need not be: two equally noisy layers that tie give a maximum that spreads less
    than either. The facts are sorted first (by their value at the peak layer, then their
    whole curve), so the interval does not depend on their order, and the resamples are
    those of `bootstrap_mean` with the same seed."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level!r}")
    per_fact = fact_curves(traces, kind, category)
    layer = peak_layer(per_fact)
    data = np.array(sorted(per_fact, key=lambda row: (row[layer], *row)), dtype=np.float64)
    rng = np.random.default_rng(seed)
    curves = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    peaks = curves.max(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(peaks, [tail, 1 - tail])
    interval = Interval(float(data.mean(axis=0)[layer]), float(low), float(high), level, len(data), resamples)
    return PeakInterval(interval, layer, float((curves.argmax(axis=1) == layer).mean()))


def fact_curves(traces: Sequence[Trace], kind: str, category: TokenCategory | str) -> list[list[float]]:
    """Each fact's IE curve over layers at `category`: the mean over its positions there;
    facts without a position in the category are left out."""
    per_fact: list[list[float]] = []
    for trace in traces:
        positions = trace.positions(category)
        if positions:
            grid = trace.grid(kind)
            per_fact.append([sum(grid[l][p] for p in positions) / len(positions) for l in range(trace.n_layers)])
    if not per_fact:
        raise ValueError(f"no fact has a token in category {TokenCategory(category).value!r}")
    return per_fact


def peak_layer(per_fact: Sequence[Sequence[float]]) -> int:
    """The layer where the mean curve peaks (the first of equal ones)."""
    n_layers = len(per_fact[0])
    return max(range(n_layers), key=lambda l: sum(row[l] for row in per_fact))
