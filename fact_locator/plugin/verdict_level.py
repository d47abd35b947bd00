"""The level an item's expectation is decided at, and how many looks it allows: the run's
`--fl-confidence` (or ini), else the fact set's `settings: {confidence: ...}`, else 0.95 (an
expectation's own `confidence:` beats all, inside `decide`); under `samples: auto` the
adaptive rounds' number of looks, so that the item decides as the rounds did."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fact_locator.factset import FactSet
    from fact_locator.plugin.session import FactLocatorSession

__all__ = ["adaptive_looks", "confidence_level"]


def confidence_level(fl: FactLocatorSession, factset: FactSet) -> float:
    """--fl-confidence or its ini key, else the fact set's confidence, else 0.95."""
    from fact_locator.expectations import DEFAULT_LEVEL

    return float(fl.options.explicit.get("confidence", factset.settings.get("confidence", DEFAULT_LEVEL)))


def adaptive_looks(fl: FactLocatorSession, factset: FactSet) -> int:
    """Under `samples: auto`, how many looks the rounds may take (the Bonferroni divisor they
    decided with); 1 for a fixed number of samples."""
    from fact_locator.adaptive_samples import looks
    from fact_locator.settings import AUTO_SAMPLES

    samples = fl.options.explicit.get("samples", factset.settings.get("samples"))
    return looks(int(fl.options["max-samples"])) if samples == AUTO_SAMPLES else 1
