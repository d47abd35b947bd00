"""The reference subjects a model's noise is calibrated on (`noise_calibration: model`): a
list shipped with the package (`fact_locator/data/reference_subjects.txt`), not the subjects
of the fact sets a run collects, so that every run on one model, whatever its fact sets, gets
the same noise. ROME calibrates on every subject of its fact file; a fixed list keeps that
value from moving when a fact set is added."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["ReferenceSubjects", "reference_subjects"]

_FILE = "reference_subjects.txt"


@dataclass(frozen=True)
class ReferenceSubjects:
    """The subjects, in file order, and the sha256 of their text (part of the noise's cache key)."""

    names: tuple[str, ...]
    sha256: str
    source: str

    @property
    def label(self) -> str:
        """What a trace records as its noise's `reference`."""
        return f"{self.source} ({len(self.names)} subjects, sha256 {self.sha256[:12]})"


@lru_cache(maxsize=1)
def reference_subjects() -> ReferenceSubjects:
    """The shipped list: one name a line; '#' lines and blank lines are not subjects."""
    text = resources.files("fact_locator").joinpath("data", _FILE).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    digest = hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()
    return ReferenceSubjects(names, digest, f"fact_locator/data/{_FILE}")
