"""Uncertainty of one trace over its noise draws: standard errors and confidence intervals of
TE and of every site's IE, and the probability that each site (or token category) holds the
peak, from the per-draw values a trace keeps (`tracing/sample_effects.py`).

Which interval, and why: a Student-t interval on the mean of the per-draw effects,
`mean +- t(level, n-1) * sd / sqrt(n)`. A trace's TE and IE are means of n independent draws
(IE: paired differences, restored less corrupted run of the same draw, so the noise the two
share cancels); the t-interval is exact when the per-draw effects are normal and close to
it by the central limit theorem otherwise, and it widens honestly at ROME's 10 draws, where
a bootstrap percentile interval is too narrow (it has no n-1 correction and thin tails).
Its width shrinks as 1/sqrt(n), and a later look at more draws of the same trace sees the
same kind of interval. The peak's location has no closed form: it is resampled (bootstrap
over draws, seeded).

These functions take arrays; `Trace` (`te_interval`, `ie_se`, `ie_interval`,
`peak_probability`) calls them with its draws, and gives None where it has none: traces
written before the draws were kept, attribution patching, or a single draw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_BOOTSTRAP", "EffectInterval", "category_probabilities", "check_level", "mean_interval", "peak_counts",
    "site_probabilities", "standard_errors", "t_cdf", "t_quantile",
]

# Resamples for peak-location probabilities: their Monte Carlo error is below 0.011 (one
# standard error at p = 0.5).
DEFAULT_BOOTSTRAP = 2000


@dataclass(frozen=True)
class EffectInterval:
    """A t-interval of a mean over noise draws: `estimate` [`low`, `high`] at `level`, with
    its standard error `se` over `n` draws."""

    estimate: float
    low: float
    high: float
    se: float
    level: float
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def standard_errors(draws: np.ndarray) -> np.ndarray:
    """Standard error of the mean over the last axis (sample sd, n-1), float64."""
    import numpy as np

    n = draws.shape[-1]
    return np.asarray(draws, dtype=np.float64).std(axis=-1, ddof=1) / math.sqrt(n)


def mean_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high, se) over the last axis of `draws`, float64: the t-interval at `level`."""
    import numpy as np

    level = check_level(level)
    n = draws.shape[-1]
    if n < 2:
        raise ValueError(f"an interval needs at least 2 noise samples, got {n}")
    mean = np.asarray(draws, dtype=np.float64).mean(axis=-1)
    se = standard_errors(draws)
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return mean, mean - half, mean + half, se


def peak_counts(ie_draws: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """How often each site holds the largest mean IE when the draws are resampled with
    replacement `n_boot` times: ie_draws (layers, tokens, n) -> counts (layers, tokens).
    Ties go to the first site in layer-then-token order, as `Trace.peak` breaks them."""
    import numpy as np

    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    n_layers, n_tokens, n = ie_draws.shape
    flat = np.asarray(ie_draws, dtype=np.float64).reshape(n_layers * n_tokens, n)
    rng = np.random.default_rng(seed)
    # Each resample as the weight of every draw in its mean: one matrix product for all.
    weights = np.zeros((n_boot, n))
    picks = rng.integers(0, n, size=(n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], picks), 1.0 / n)
    winners = (weights @ flat.T).argmax(axis=1)
    return np.bincount(winners, minlength=n_layers * n_tokens).reshape(n_layers, n_tokens)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (p in (0, 1)), by bisection
    on its CDF (`t_cdf`), to about 1e-10."""
    if not 0 < p < 1:
        raise ValueError(f"quantile probability must be in (0, 1), got {p!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df!r}")
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction
    (modified Lentz), on the side where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1 - _incomplete_beta(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return math.exp(log_front) * result / a


def category_probabilities(counts: np.ndarray, categories: Sequence[str]) -> dict[str, float]:
    """Site counts (layers, tokens) -> the share of resamples whose peak sits in each
    category (one per token), every category of the prompt listed, in prompt order."""
    total = float(counts.sum())
    per_token = counts.sum(axis=0)
    shares: dict[str, float] = {}
    for token, category in enumerate(categories):
        shares[category] = shares.get(category, 0.0) + float(per_token[token]) / total
    return shares


def site_probabilities(counts: np.ndarray) -> dict[tuple[int, int], float]:
    """Site counts (layers, tokens) -> {(layer, token): share} of the sites that held the
    peak at least once, the likeliest first."""
    total = float(counts.sum())
    held = [(int(count), layer, token) for (layer, token), count in _nonzero(counts)]
    return {(layer, token): count / total for count, layer, token in sorted(held, key=lambda c: (-c[0], c[1], c[2]))}


def _nonzero(counts: np.ndarray) -> list[tuple[tuple[int, int], int]]:
    import numpy as np

    return [((int(l), int(t)), int(counts[l, t])) for l, t in zip(*np.nonzero(counts))]
