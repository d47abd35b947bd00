"""Which model a trace was made with: the identity every trace and cache key carries."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelIdentity"]


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights were traced: the spec the user gave and a hash of the weight files."""

    name: str
    architecture: str
    n_layers: int
    fingerprint: str
    dtype: str = "float32"
