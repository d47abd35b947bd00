"""Intervals of a change between two runs: how much an effect dropped, with the uncertainty
of both runs in it (`compare.py`'s baseline rule calls a drop only beyond it).

Which interval, and why:
- A fact's TE: each run's TE is a mean over its own noise draws, with a t-interval
  (`tracing/uncertainty.py`). The drop is before - after with standard error
  sqrt(se_before^2 + se_after^2) and a Welch t-interval (Welch-Satterthwaite degrees of
  freedom, rounded down): the same kind of interval as each run's, so at ROME's 10 draws it widens as
  theirs do. It treats the two runs' draws as independent. Two runs with the same seed
  draw the same noise, so their TEs tend to move together and the true spread of the
  difference is smaller: the interval is then conservative (a drop it calls is real; a
  small one may be reported as within noise).
- A fact set's ATE (or AIE): each run's aggregate keeps its facts' values and a percentile
  bootstrap over facts (`confidence.py`). The drop's interval resamples the two runs'
  facts independently, as `bootstrap_mean` does each (values sorted first, seeded), and
  takes percentiles of the difference of the means. It does not pair a fact with itself
  across runs (an aggregate does not keep which value is whose), so it too is
  conservative when both runs hold the same facts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fact_locator.tracing.uncertainty import EffectInterval, check_level, t_quantile

__all__ = ["DropInterval", "bootstrap_drop", "welch_drop"]

DROP_RESAMPLES = 2000


@dataclass(frozen=True)
class DropInterval:
    """before - after, `estimate` [`low`, `high`] at `level`; `method` says how it was made."""

    estimate: float
    low: float
    high: float
    level: float
    method: str

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def welch_drop(before: EffectInterval, after: EffectInterval, level: float = 0.95) -> DropInterval:
    """The drop before.estimate - after.estimate with a Welch t-interval at `level`."""
    level = check_level(level)
    estimate = before.estimate - after.estimate
    var_before, var_after = before.se ** 2, after.se ** 2
    se = math.sqrt(var_before + var_after)
    if se == 0.0:  # both runs' draws all equal: no spread to widen by
        return DropInterval(estimate, estimate, estimate, level, "welch-t")
    denominator = sum(v * v / (n - 1) for v, n in ((var_before, before.n), (var_after, after.n)) if v > 0)
    df = max(1, math.floor((var_before + var_after) ** 2 / denominator))
    half = t_quantile(0.5 + level / 2, df) * se
    return DropInterval(estimate, estimate - half, estimate + half, level, "welch-t")


def bootstrap_drop(before: Sequence[float], after: Sequence[float], level: float = 0.95,
                   resamples: int = DROP_RESAMPLES, seed: int = 0) -> DropInterval:
    """mean(before) - mean(after) with a percentile bootstrap that resamples each side's
    values independently (sorted first, so their order does not matter)."""
    import numpy as np

    level = check_level(level)
    if not before or not after:
        raise ValueError("a bootstrap of a drop needs values on both sides")
    first = np.sort(np.asarray(before, dtype=np.float64))
    second = np.sort(np.asarray(after, dtype=np.float64))
    rng = np.random.default_rng(seed)
    means_before = first[rng.integers(0, first.size, size=(resamples, first.size))].mean(axis=1)
    means_after = second[rng.integers(0, second.size, size=(resamples, second.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means_before - means_after, [tail, 1 - tail])
    return DropInterval(float(first.mean() - second.mean()), float(low), float(high), level, "bootstrap")
