"""ATE and AIE over a set of traces, per token category and layer (the paper's Figure 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["FIGURE2_CATEGORIES", "Aggregate", "aggregate"]

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
        return {
            "n_facts": self.n_facts,
            "ate": self.ate,
            "mean_p_clean": self.mean_p_clean,
            "mean_p_corrupt": self.mean_p_corrupt,
            "aie": {k: {c: list(v) for c, v in cats.items()} for k, cats in self.aie.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        return cls(
            n_facts=int(data["n_facts"]),
            ate=float(data["ate"]),
            mean_p_clean=float(data["mean_p_clean"]),
            mean_p_corrupt=float(data["mean_p_corrupt"]),
            aie={k: {c: tuple(float(x) for x in v) for c, v in cats.items()} for k, cats in data["aie"].items()},
        )


def aggregate(traces: Sequence[Trace]) -> Aggregate:
    """ROME's averaging: each middle/further position is its own sample; a one-token
    subject counts as first and last subject token. Traces must share layers and kinds."""
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
    return Aggregate(
        n_facts=n,
        ate=sum(t.te for t in traces) / n,
        mean_p_clean=sum(t.p_clean for t in traces) / n,
        mean_p_corrupt=sum(t.p_corrupt for t in traces) / n,
        aie=aie,
    )
