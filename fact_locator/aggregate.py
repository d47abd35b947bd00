"""ATE and AIE over a set of traces, per token category and layer (the paper's Figure 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.trace import TokenCategory, Trace

if TYPE_CHECKING:
    from fact_locator.confidence import Interval, PeakInterval

__all__ = ["FIGURE2_CATEGORIES", "INTERVAL_CATEGORIES", "INTERVAL_LEVEL", "Aggregate", "aggregate"]

# Bootstrap intervals (over facts, seeded) are kept for the ATE and for the max AIE of each
# kind at these categories (one position per fact: a fact is one sample).
INTERVAL_CATEGORIES: tuple[str, ...] = ("last_subject", "last")
INTERVAL_LEVEL = 0.95
INTERVAL_SEED = 0

FIGURE2_CATEGORIES: tuple[TokenCategory, ...] = (
    TokenCategory.FIRST_SUBJECT,
    TokenCategory.MIDDLE_SUBJECT,
    TokenCategory.LAST_SUBJECT,
    TokenCategory.FIRST_SUBSEQUENT,
    TokenCategory.FURTHER,
    TokenCategory.LAST,
)


@dataclass(frozen=True)
class Aggregate:
    """Means over facts. `aie[kind][category][layer]`; a category no fact has is absent."""

    n_facts: int
    ate: float
    mean_p_clean: float
    mean_p_corrupt: float
    aie: dict[str, dict[str, tuple[float, ...]]]
    # Per-fact values the intervals resample: "ate" -> each fact's TE; "aie:<kind>:<category>"
    # -> each fact's IE at the layer where the mean peaks (that layer under "layers").
    samples: dict[str, tuple[float, ...]] = field(default_factory=dict)
    layers: dict[str, int] = field(default_factory=dict)
    # 95% bootstrap intervals of those means, as Interval.to_dict() ("ate", "aie:mlp:last", ...).
    # An "aie:" interval is that of the AIE at the layer under "layers", chosen once from the
    # same facts; it does not cover that choice.
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The same keys' peak AIE over layers, its 95% interval re-choosing the layer in every
    # resample, as PeakInterval.to_dict() (with the share of resamples that keep the layer).
    peak_intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The same keys' values per fact and noise draw (facts whose traces kept >= 2 draws), for
    # the two-level bootstrap an aggregate verdict is decided by (`two_level_interval`).
    draws: dict[str, tuple[tuple[float, ...], ...]] = field(default_factory=dict)
    # Every kind's and category's (`interval_key`) IE curve over layers per fact and noise draw
    # (`confidence.FactDraws`, weighted by the fact's positions in the category), for verdicts
    # on the max over layers taken inside each bootstrap replicate (`curve_replicates`).
    # Kept in memory only: it would outweigh the traces in a results file, and whoever decides
    # again from saved results (`fact-locator merge`) rebuilds the aggregate from its traces.
    curve_draws: dict[str, tuple[Any, ...]] = field(default_factory=dict, compare=False, repr=False)

    def curve_replicates(self, curves: Sequence[tuple[str, str]]) -> Any | None:
        """Each (kind, category)'s mean AIE curve in every replicate of the two-level bootstrap
        (facts, then each fact's noise draws, `confidence.two_level_replicates`): an array
        (resamples, len(curves), layers), from which a verdict takes the max over layers inside
        each replicate. The curves are resampled together (the same facts and draws in a
        replicate), so their maxima are paired. None when the aggregate kept no per-draw
        curves (traces without draws, or an aggregate read from a file)."""
        import numpy as np

        from fact_locator.confidence import DEFAULT_RESAMPLES, FactDraws, two_level_replicates

        keys = [self.interval_key(kind, category) for kind, category in curves]
        if not keys or any(key not in self.curve_draws for key in keys):
            return None
        per_key = [self.curve_draws[key] for key in keys]
        # Fact i's curves stacked: draws (n_draws, k, layers), one weight per curve (k, 1).
        facts = [FactDraws(np.stack([rows[i].draws for rows in per_key], axis=1),
                           np.array([rows[i].weight for rows in per_key], dtype=np.float64)[:, None])
                 for i in range(len(per_key[0]))]
        return two_level_replicates(facts, DEFAULT_RESAMPLES, INTERVAL_SEED)

    def two_level_interval(self, key: str, level: float) -> Interval | None:
        """The interval of `key` at `level` resampling facts and, within each, its noise
        draws (`confidence.two_level_bootstrap_mean`); None when the traces kept no draws."""
        from fact_locator.confidence import DEFAULT_RESAMPLES, two_level_bootstrap_mean

        per_fact = self.draws.get(key)
        return two_level_bootstrap_mean(per_fact, level, DEFAULT_RESAMPLES, INTERVAL_SEED) if per_fact else None

    @staticmethod
    def interval_key(kind: str, category: TokenCategory | str) -> str:
        return f"aie:{kind}:{TokenCategory(category).value}"

    def interval(self, key: str, level: float = INTERVAL_LEVEL) -> Interval | None:
        """The bootstrap interval of `key` ('ate' or interval_key(...)) at `level`; None when
        the aggregate has no per-fact values for it."""
        from fact_locator.confidence import DEFAULT_RESAMPLES, Interval, bootstrap_mean

        stored = self.intervals.get(key)
        if stored is not None and abs(float(stored["level"]) - level) < 1e-12:
            return Interval(**stored)
        values = self.samples.get(key)
        if not values:
            return None
        return bootstrap_mean(values, level, DEFAULT_RESAMPLES, INTERVAL_SEED)

    def peak_interval(self, kind: str, category: TokenCategory | str) -> PeakInterval | None:
        """The peak AIE's interval that covers the layer choice (`confidence.peak_aie_interval`);
        None for an aggregate made without intervals or before they were kept."""
        from fact_locator.confidence import PeakInterval

        stored = self.peak_intervals.get(self.interval_key(kind, category))
        return None if stored is None else PeakInterval.from_dict(stored)

    def curve(self, kind: str, category: TokenCategory | str) -> tuple[float, ...]:
        category = TokenCategory(category).value
        if kind not in self.aie:
            raise KeyError(f"kind {kind!r} was not traced (traced: {', '.join(self.aie)})")
        if category not in self.aie[kind]:
            raise KeyError(f"no fact has a token in category {category!r}")
        return self.aie[kind][category]

    def max_aie(self, kind: str, category: TokenCategory | str) -> tuple[int, float]:
        """(layer, value) of the largest AIE of `kind` at `category`."""
        curve = self.curve(kind, category)
        layer = max(range(len(curve)), key=curve.__getitem__)
        return layer, curve[layer]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "n_facts": self.n_facts,
            "ate": self.ate,
            "mean_p_clean": self.mean_p_clean,
            "mean_p_corrupt": self.mean_p_corrupt,
            "aie": {k: {c: list(v) for c, v in cats.items()} for k, cats in self.aie.items()},
            "samples": {k: list(v) for k, v in self.samples.items()},
            "layers": dict(self.layers),
            "intervals": {k: dict(v) for k, v in self.intervals.items()},
        }
        if self.peak_intervals:  # absent from aggregates written before they were kept
            data["peak_intervals"] = {k: dict(v) for k, v in self.peak_intervals.items()}
        if self.draws:  # absent where the traces kept no draws, and in older files
            data["draws"] = {k: [list(d) for d in v] for k, v in self.draws.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        return cls(
            n_facts=int(data["n_facts"]),
            ate=float(data["ate"]),
            mean_p_clean=float(data["mean_p_clean"]),
            mean_p_corrupt=float(data["mean_p_corrupt"]),
            aie={k: {c: tuple(float(x) for x in v) for c, v in cats.items()} for k, cats in data["aie"].items()},
            samples={k: tuple(float(x) for x in v) for k, v in (data.get("samples") or {}).items()},
            layers={k: int(v) for k, v in (data.get("layers") or {}).items()},
            intervals={k: dict(v) for k, v in (data.get("intervals") or {}).items()},
            peak_intervals={k: dict(v) for k, v in (data.get("peak_intervals") or {}).items()},
            draws={k: tuple(tuple(float(x) for x in d) for d in v) for k, v in (data.get("draws") or {}).items()},
        )


def aggregate(traces: Sequence[Trace], intervals: bool = False) -> Aggregate:
    """ROME's averaging: each middle/further position is its own sample; a one-token
    subject counts as first and last subject token. Traces must share layers and kinds.
    With `intervals`, also 95% bootstrap intervals over facts (see `INTERVAL_CATEGORIES`): of
    the AIE at the peak layer, and of the peak AIE with the layer re-chosen per resample."""
    if not traces:
        raise ValueError("no traces to aggregate")
    n_layers = traces[0].n_layers
    kinds = [k for k in traces[0].kinds if all(k in t.ie for t in traces)]
    aie: dict[str, dict[str, tuple[float, ...]]] = {}
    for kind in kinds:
        per_category: dict[str, tuple[float, ...]] = {}
        for category in FIGURE2_CATEGORIES:
            sums = [0.0] * n_layers
            count = 0
            for trace in traces:
                grid = trace.ie[kind]
                for pos in trace.positions(category):
                    count += 1
                    for layer in range(n_layers):
                        sums[layer] += grid[layer][pos]
            if count:
                per_category[category.value] = tuple(s / count for s in sums)
        aie[kind] = per_category
    n = len(traces)
    samples: dict[str, tuple[float, ...]] = {}
    layers: dict[str, int] = {}
    found: dict[str, dict[str, Any]] = {}
    peaks: dict[str, dict[str, Any]] = {}
    draws: dict[str, tuple[tuple[float, ...], ...]] = {}
    curve_draws: dict[str, tuple[Any, ...]] = {}
    if intervals:
        from fact_locator.confidence import DEFAULT_RESAMPLES, bootstrap_mean, peak_aie_interval

        samples["ate"] = tuple(t.te for t in traces)
        for kind in kinds:
            for category in INTERVAL_CATEGORIES:
                curve = aie[kind].get(category)
                if curve is None:
                    continue
                layer = max(range(n_layers), key=curve.__getitem__)
                key = Aggregate.interval_key(kind, category)
                samples[key] = tuple(
                    sum(t.ie[kind][layer][p] for p in t.positions(category)) / len(t.positions(category))
                    for t in traces if t.positions(category))
                layers[key] = layer
                peaks[key] = peak_aie_interval(traces, kind, category, INTERVAL_LEVEL, DEFAULT_RESAMPLES,
                                               INTERVAL_SEED).to_dict()
        for key, values in samples.items():
            found[key] = bootstrap_mean(values, INTERVAL_LEVEL, DEFAULT_RESAMPLES, INTERVAL_SEED).to_dict()
        if all((t.n_samples or 0) >= 2 for t in traces):
            draws = fact_draws(traces, layers)
            curve_draws = fact_curve_draws(traces, kinds, aie)
    return Aggregate(
        n_facts=n,
        ate=sum(t.te for t in traces) / n,
        mean_p_clean=sum(t.p_clean for t in traces) / n,
        mean_p_corrupt=sum(t.p_corrupt for t in traces) / n,
        aie=aie,
        samples=samples,
        layers=layers,
        intervals=found,
        peak_intervals=peaks,
        draws=draws,
        curve_draws=curve_draws,
    )


def fact_draws(traces: Sequence[Trace], layers: dict[str, int]) -> dict[str, tuple[tuple[float, ...], ...]]:
    """Per fact, per noise draw: TE ("ate") and, for each "aie:<kind>:<category>" key, the IE
    at that key's layer averaged over the fact's positions in the category."""
    out: dict[str, tuple[tuple[float, ...], ...]] = {}
    te_draws = [t.te_samples() for t in traces]
    out["ate"] = tuple(tuple(float(x) for x in d) for d in te_draws if d is not None)
    for key, layer in layers.items():
        _, kind, category = key.split(":")
        rows = []
        for trace in traces:
            positions = trace.positions(category)
            ie = trace.ie_samples(kind)
            if positions and ie is not None:
                rows.append(tuple(float(x) for x in ie[layer, positions, :].mean(axis=0)))
        out[key] = tuple(rows)
    return out


def fact_curve_draws(traces: Sequence[Trace], kinds: Sequence[str],
                     aie: dict[str, dict[str, tuple[float, ...]]]) -> dict[str, tuple[Any, ...]]:
    """Per kind and category the aggregate has, per fact: its IE curve over layers in each
    noise draw, summed over its positions in the category, as `FactDraws` (n_draws, layers)
    weighted by the number of those positions, so that a weighted mean over facts is ROME's
    average over positions (`Aggregate.aie`); a fact without a position there weighs 0."""
    import numpy as np

    from fact_locator.confidence import FactDraws

    out: dict[str, tuple[Any, ...]] = {}
    for kind in kinds:
        ie = [t.ie_samples(kind) for t in traces]
        for category in aie[kind]:
            rows = []
            for trace, draws in zip(traces, ie):
                assert draws is not None  # the caller checked every trace kept its draws
                positions = trace.positions(category)
                summed = draws[:, positions, :].sum(axis=1).T if positions else np.zeros((draws.shape[2], draws.shape[0]))
                # FactDraws' mean over facts divides by the weights: store the per-position mean.
                rows.append(FactDraws(summed / max(len(positions), 1), float(len(positions))))
            out[Aggregate.interval_key(kind, category)] = tuple(rows)
    return out
