"""Bootstrap confidence intervals: over facts for ATE / AIE, over noise samples for one fact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["FactDraws", "Interval", "PeakInterval", "aie_interval", "ate_interval", "bootstrap_mean", "peak_aie_interval",
           "percentile_ends", "two_level_bootstrap_mean", "two_level_replicates"]

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
    noise each one drew (an aggregate verdict, docs/statistics.md). Seeded; the facts are sorted
    by their draws first, so the order they came in does not matter."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1, got {level!r}")
    facts = [FactDraws(np.asarray(draws, dtype=np.float64)) for draws in per_fact_draws if len(draws)]
    if not facts:
        raise ValueError("no values to bootstrap")
    means = two_level_replicates(facts, resamples, seed)
    low, high = percentile_ends(means, level)
    estimate = float(np.mean([np.mean(f.draws) for f in facts]))
    return Interval(estimate, low, high, level, len(facts), resamples)


@dataclass(frozen=True, eq=False)  # numpy fields: compared by identity, never by value
class FactDraws:
    """One fact's values per noise draw, for the two-level bootstrap: `draws` is (n_draws,) or
    (n_draws, *shape) (a curve over layers per draw, or several curves stacked), and `weight`
    (broadcast to `shape`) is how much the fact counts in a mean over facts: 1 for a value per
    fact, the number of the fact's positions in a token category for ROME's averaging, where
    each position is a sample (0 where the fact has none)."""

    draws: Any  # numpy array (n_draws, *shape)
    weight: Any = 1.0

    def sort_key(self) -> tuple[float, ...]:
        import numpy as np

        return (*np.asarray(self.draws, dtype=np.float64).ravel().tolist(),
                *np.broadcast_to(np.asarray(self.weight, dtype=np.float64), self.draws.shape[1:]).ravel().tolist())


def two_level_replicates(facts: Sequence[FactDraws], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Any:
    """The two-level bootstrap's replicates: for each of `resamples`, draw the facts with
    replacement and, within each drawn fact, its noise draws with replacement; the replicate
    is the weighted mean over the drawn facts of their resampled draw means, shape
    (resamples, *shape). Keeping whole replicates (not only an interval) lets a caller take
    any statistic inside each one, e.g. the max over layers of a replicate's mean curve.
    Seeded; the facts are sorted first, so their order does not matter. A replicate whose
    drawn facts all weigh 0 at an entry is NaN there."""
    import numpy as np

    ordered = sorted(facts, key=FactDraws.sort_key)
    if not ordered:
        raise ValueError("no values to bootstrap")
    shape = np.asarray(ordered[0].draws).shape[1:]
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(ordered), size=(resamples, len(ordered)))
    total = np.zeros((resamples, *shape), dtype=np.float64)
    weight = np.zeros((resamples, *shape), dtype=np.float64)
    for index, fact in enumerate(ordered):
        rows, _ = np.nonzero(picked == index)
        if not rows.size:
            continue
        values = np.asarray(fact.draws, dtype=np.float64)
        n = values.shape[0]
        chosen = rng.integers(0, n, size=(rows.size, n))
        # How often each draw was chosen per row: the resampled mean is counts @ draws / n.
        counts = np.zeros((rows.size, n), dtype=np.float64)
        np.add.at(counts, (np.arange(rows.size)[:, None], chosen), 1.0)
        means = (counts @ values.reshape(n, -1) / n).reshape((rows.size, *shape))
        w = np.broadcast_to(np.asarray(fact.weight, dtype=np.float64), shape)
        np.add.at(total, rows, means * w)
        np.add.at(weight, rows, np.broadcast_to(w, (rows.size, *shape)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / weight


def percentile_ends(values: Any, level: float) -> tuple[float, float]:
    """The two-sided percentile interval's ends of `values` (1-d, NaN left out) at `level`."""
    import numpy as np

    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


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
