"""The `Trace` value: everything one causal trace measured, with a lossless JSON round trip."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fact_locator.errors import ResultsError
from fact_locator.models.identity import ModelIdentity
from fact_locator.tracing.sample_effects import SampleEffects
from fact_locator.tracing.uncertainty import (DEFAULT_BOOTSTRAP, EffectInterval, category_probabilities, mean_interval, peak_counts,
                                              site_probabilities, standard_errors)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TRACE_SCHEMA_VERSION", "EffectInterval", "NoiseInfo", "SampleEffects", "SeveredPaths", "TokenCategory", "Trace",
           "token_categories"]

TRACE_SCHEMA_VERSION = 1


class TokenCategory(str, Enum):
    """Prompt positions as the paper's Figure 2 groups them."""

    BEFORE_SUBJECT = "before_subject"
    FIRST_SUBJECT = "first_subject"
    MIDDLE_SUBJECT = "middle_subject"
    LAST_SUBJECT = "last_subject"
    FIRST_SUBSEQUENT = "first_subsequent"
    FURTHER = "further"
    LAST = "last"


def token_categories(n_tokens: int, subject_range: tuple[int, int]) -> list[TokenCategory]:
    """One category per position. A one-token subject is labelled `last_subject` here and
    the token right after a subject that ends before the last token `last`; `Trace.positions`
    still counts them as first subject / first subsequent token too, as ROME does."""
    start, end = subject_range
    cats = []
    for i in range(n_tokens):
        if i < start:
            cat = TokenCategory.BEFORE_SUBJECT
        elif i == end - 1:
            cat = TokenCategory.LAST_SUBJECT
        elif i == start:
            cat = TokenCategory.FIRST_SUBJECT
        elif i < end:
            cat = TokenCategory.MIDDLE_SUBJECT
        elif i == n_tokens - 1:
            cat = TokenCategory.LAST
        elif i == end:
            cat = TokenCategory.FIRST_SUBSEQUENT
        else:
            cat = TokenCategory.FURTHER
        cats.append(cat)
    return cats


@dataclass(frozen=True)
class NoiseInfo:
    """The noise standard deviation used and how it was obtained. `source` is the
    `noise_calibration` that made it (model, factset, fact), or given or replacement; ''
    in traces written before it was recorded. `reference` names what a model's noise was
    measured on (the subject list and its hash)."""

    std: float
    calibration: str
    source: str = ""
    reference: str = ""


@dataclass(frozen=True)
class SeveredPaths:
    """Severed paths at one token (the paper's Figure 3), as stored with a trace.

    `curves["hidden"][layer]` is the IE of restoring the hidden state at `token` and `layer`;
    `curves["mlp"]` / `curves["attn"]` the same with the later MLP / attention outputs at
    that token held at their corrupted values. `shares[kind]` is the fraction of the hidden
    effect at its peak layer (`peak_layer`, IE `peak_ie`) that flows through `kind`.
    Results files written before the curves were stored have shares only: `curves` is empty
    and `token_text` / `p_corrupt` are unknown there."""

    token: int
    peak_layer: int
    peak_ie: float
    shares: dict[str, float]
    curves: dict[str, tuple[float, ...]] = field(default_factory=dict)
    token_text: str = ""
    p_corrupt: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "token_text": self.token_text,
            "peak_layer": self.peak_layer,
            "peak_ie": self.peak_ie,
            "shares": dict(self.shares),
            "curves": {kind: list(curve) for kind, curve in self.curves.items()},
            "p_corrupt": self.p_corrupt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeveredPaths:
        """Reads this class's `to_dict` and the shares-only dict that results files held
        before it: {"token", "mlp_share", "attn_share", "hidden_peak": {"layer", "ie"}}."""
        if "hidden_peak" in data:
            peak = data["hidden_peak"]
            shares = {kind: float(data[f"{kind}_share"]) for kind in ("mlp", "attn") if data.get(f"{kind}_share") is not None}
            return cls(token=int(data["token"]), peak_layer=int(peak["layer"]), peak_ie=float(peak["ie"]), shares=shares)
        return cls(
            token=int(data["token"]),
            peak_layer=int(data["peak_layer"]),
            peak_ie=float(data["peak_ie"]),
            shares={str(kind): float(value) for kind, value in dict(data["shares"]).items()},
            curves={str(kind): tuple(float(v) for v in curve) for kind, curve in dict(data.get("curves") or {}).items()},
            token_text=str(data.get("token_text", "")),
            p_corrupt=_optional_float(data.get("p_corrupt")),
        )


@dataclass(frozen=True)
class Trace:
    """One fact's causal trace. `ie[kind][layer][token]` is the indirect effect of a site.

    `sample_effects` keeps every noise draw's values, from which the uncertainty methods
    (`te_interval`, `ie_se`, `ie_interval`, `peak_probability`; `tracing/uncertainty.py` says
    which interval and why) and `Tracer.extend` work. It is None for traces written before
    the draws were kept and for attribution patching: those methods then return None."""

    model: ModelIdentity
    fact_id: str | None
    subject: str
    relation: str
    prompt: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    subject_range: tuple[int, int]
    target: str
    target_token: str
    target_id: int
    top_token: str
    p_clean: float
    p_corrupt: float
    ie: dict[str, tuple[tuple[float, ...], ...]]
    settings: dict[str, Any]
    noise: NoiseInfo
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    versions: dict[str, str] = field(default_factory=dict, compare=False)
    version: int = TRACE_SCHEMA_VERSION
    # The metric the effects are measured in (settings.metric) and its clean / corrupted
    # values; for the default "prob" they equal p_clean and p_corrupt.
    metric: str = "prob"
    clean_value: float | None = None
    corrupt_value: float | None = None
    # Which target the metric reads (settings.target_metric): "first", its first token (ROME),
    # or "full", the whole target teacher-forced (p_clean, p_corrupt: the whole target's P).
    target_metric: str = "first"
    # Severed paths at the last subject token (`trace --severed`); None when not computed.
    severed: SeveredPaths | None = None
    # The values of every noise draw; None where not kept (see the class docstring).
    sample_effects: SampleEffects | None = None

    # -- derived values ----------------------------------------------------------------
    @property
    def te(self) -> float:
        """Total effect, the paper's sign: P(o) - P*(o) (or the same in the trace's metric)."""
        if self.clean_value is not None and self.corrupt_value is not None:
            return self.clean_value - self.corrupt_value
        return self.p_clean - self.p_corrupt

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.ie)

    @property
    def n_layers(self) -> int:
        return self.model.n_layers

    @property
    def known(self) -> bool:
        """The first-token rule: the clean run's top-1 token is the target's first token. ROME's
        rule (the greedy continuation is the whole target, the default `known_rule`) needs the
        clean check (`audit_flow.CleanCheck.known`); the audit records its verdict in the fact's
        status reason, which the reports show."""
        return self.top_token == self.target_token

    @property
    def categories(self) -> list[TokenCategory]:
        return token_categories(len(self.tokens), self.subject_range)

    def positions(self, category: TokenCategory | str) -> list[int]:
        """Positions in `category`, as ROME's averaging counts them: a one-token subject is both
        first and last subject token, and a subject that ends right before the last token
        makes that token both first subsequent and last (its notebook's `scores[first_a]`)."""
        category = TokenCategory(category)
        start, end = self.subject_range
        if category is TokenCategory.FIRST_SUBJECT:
            return [start]
        if category is TokenCategory.LAST_SUBJECT:
            return [end - 1]
        if category is TokenCategory.FIRST_SUBSEQUENT:
            return [end] if end < len(self.tokens) else []
        if category is TokenCategory.LAST:
            return [len(self.tokens) - 1]
        return [i for i, c in enumerate(self.categories) if c is category]

    def grid(self, kind: str) -> tuple[tuple[float, ...], ...]:
        if kind not in self.ie:
            raise KeyError(f"kind {kind!r} was not traced (traced: {', '.join(self.ie)})")
        return self.ie[kind]

    def peak(self, kind: str) -> tuple[int, int, float]:
        """(layer, token, IE) of the largest indirect effect of `kind`."""
        best = (0, 0, float("-inf"))
        for layer, row in enumerate(self.grid(kind)):
            for token, value in enumerate(row):
                if value > best[2]:
                    best = (layer, token, value)
        return best

    # -- uncertainty over noise draws ----------------------------------------------------------
    @property
    def n_samples(self) -> int | None:
        """How many noise draws the trace kept (None: not kept)."""
        return self.sample_effects.n if self.sample_effects is not None else None

    def te_samples(self) -> np.ndarray | None:
        """TE in each noise draw, float64 (n,); None without kept draws."""
        if self.sample_effects is None:
            return None
        clean = self.clean_value if self.clean_value is not None else self.p_clean
        return self.sample_effects.te_array(clean)

    def ie_samples(self, kind: str) -> np.ndarray | None:
        """IE of every site in each noise draw, float64 (layers, tokens, n); None without kept draws."""
        self.grid(kind)  # the error for a kind that was not traced
        return self.sample_effects.ie_array(kind) if self.sample_effects is not None else None

    def te_se(self) -> float | None:
        """Standard error of TE over the noise draws (None: no draws kept, or only one)."""
        draws = self.te_samples()
        return float(standard_errors(draws)) if draws is not None and draws.shape[0] >= 2 else None

    def te_interval(self, level: float = 0.95) -> EffectInterval | None:
        """TE's t-interval over the noise draws at `level` (None: no draws kept, or only one)."""
        draws = self.te_samples()
        if draws is None or draws.shape[0] < 2:
            return None
        mean, low, high, se = mean_interval(draws, level)
        return EffectInterval(float(mean), float(low), float(high), float(se), level, int(draws.shape[0]))

    def ie_se(self, kind: str) -> tuple[tuple[float, ...], ...] | None:
        """Standard error of each site's IE, `[layer][token]` like `grid` (None: no draws kept, or only one)."""
        draws = self.ie_samples(kind)
        if draws is None or draws.shape[-1] < 2:
            return None
        return tuple(tuple(float(v) for v in row) for row in standard_errors(draws))

    def ie_interval(self, kind: str, level: float = 0.95) -> tuple[tuple[EffectInterval, ...], ...] | None:
        """Each site's IE t-interval at `level`, `[layer][token]` like `grid` (None: no draws kept, or only one)."""
        draws = self.ie_samples(kind)
        if draws is None or draws.shape[-1] < 2:
            return None
        mean, low, high, se = mean_interval(draws, level)
        n = int(draws.shape[-1])
        return tuple(
            tuple(EffectInterval(float(mean[l, t]), float(low[l, t]), float(high[l, t]), float(se[l, t]), level, n)
                  for t in range(mean.shape[1]))
            for l in range(mean.shape[0])
        )

    def peak_probability(self, kind: str, by: Literal["site", "category"] = "site", n_boot: int = DEFAULT_BOOTSTRAP,
                         seed: int = 0) -> dict[tuple[int, int], float] | dict[str, float] | None:
        """The probability, under resampling of the noise draws (bootstrap, `n_boot` times,
        seeded), that each site holds the largest mean IE of `kind`: by="site" gives
        {(layer, token): p} of the sites that held it at least once, the likeliest first;
        by="category" gives {token category: p} for every category of the prompt. The
        probabilities sum to 1. None without kept draws."""
        if by not in ("site", "category"):
            raise ValueError(f"peak_probability by {by!r}: choose 'site' or 'category'")
        draws = self.ie_samples(kind)
        if draws is None:
            return None
        counts = peak_counts(draws, n_boot, seed)
        if by == "site":
            return site_probabilities(counts)
        return category_probabilities(counts, [c.value for c in self.categories])

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["te"] = self.te
        data["tokens"] = list(self.tokens)
        data["token_ids"] = list(self.token_ids)
        data["subject_range"] = list(self.subject_range)
        data["categories"] = [c.value for c in self.categories]
        data["ie"] = {kind: [list(row) for row in grid] for kind, grid in self.ie.items()}
        data["settings"] = {**self.settings, "noise_std": self.noise.std}
        if self.severed is None:
            del data["severed"]  # a trace without severed paths keeps the JSON it always had
        else:
            data["severed"] = self.severed.to_dict()
        if self.sample_effects is None:
            del data["sample_effects"]
        else:
            data["sample_effects"] = self.sample_effects.to_dict()
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        version = data.get("version")
        if version != TRACE_SCHEMA_VERSION:
            raise ResultsError(f"trace schema version {version!r} is not {TRACE_SCHEMA_VERSION}")
        try:
            settings = dict(data["settings"])
            settings.pop("noise_std", None)
            return cls(
                model=ModelIdentity(**data["model"]),
                fact_id=data["fact_id"],
                subject=data["subject"],
                relation=data["relation"],
                prompt=data["prompt"],
                tokens=tuple(data["tokens"]),
                token_ids=tuple(data["token_ids"]),
                subject_range=(int(data["subject_range"][0]), int(data["subject_range"][1])),
                target=data["target"],
                target_token=data["target_token"],
                target_id=int(data["target_id"]),
                top_token=data["top_token"],
                p_clean=float(data["p_clean"]),
                p_corrupt=float(data["p_corrupt"]),
                ie={k: tuple(tuple(float(v) for v in row) for row in grid) for k, grid in data["ie"].items()},
                settings=settings,
                noise=NoiseInfo(**data["noise"]),
                timings=dict(data.get("timings", {})),
                versions=dict(data.get("versions", {})),
                version=version,
                metric=str(data.get("metric", "prob")),
                clean_value=_optional_float(data.get("clean_value")),
                corrupt_value=_optional_float(data.get("corrupt_value")),
                # Traces from before the setting read the first target token.
                target_metric=str(data.get("target_metric", "first")),
                severed=SeveredPaths.from_dict(data["severed"]) if data.get("severed") is not None else None,
                # Traces written before the draws were kept have none: their intervals are None.
                sample_effects=SampleEffects.from_dict(data["sample_effects"]) if data.get("sample_effects") is not None else None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ResultsError(f"not a fact-locator trace: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Trace:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read trace ({exc.strerror})") from exc
        try:
            return cls.from_json(text)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        except ResultsError as exc:
            raise ResultsError(f"{path}: {exc}") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
