"""Swapping a model's submodules (or any attribute) for the duration of a `with` block; the
originals always come back, even when the forward fails."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["replaced_layers", "replaced_submodules", "swapped"]


@contextmanager
def replaced_layers(layers: Any, replacements: Mapping[int, Any]) -> Iterator[None]:
    """Swap entries of a ModuleList for the duration."""
    # A ModuleList keeps entry i as its attribute "i" (what `layers[i] = module` sets).
    with swapped([(layers, str(i), module) for i, module in replacements.items()]):
        yield


@contextmanager
def replaced_submodules(root: Any, replacements: Mapping[str, Any]) -> Iterator[None]:
    """Swap submodules of `root`, given by dotted path, for the duration."""
    assignments = []
    for path, module in replacements.items():
        parent, _, name = path.rpartition(".")
        assignments.append((root.get_submodule(parent) if parent else root, name, module))
    with swapped(assignments):
        yield


@contextmanager
def swapped(assignments: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set each (owner, attribute, value) for the duration."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _value in assignments]
    try:
        for owner, name, value in assignments:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
