"""The library versions that traces and results files record, so a reader knows what produced them.

A version is read from the loaded module when it is imported, else from the installed
distribution's metadata, so asking never imports torch or transformers.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

__all__ = ["library_versions", "run_versions"]

_LIBRARIES = ("torch", "transformers")


def _installed(dist: str) -> str | None:
    try:
        return sys.modules[dist].__version__ if dist in sys.modules else version(dist)
    except (PackageNotFoundError, AttributeError):
        return None


def library_versions() -> dict[str, str]:
    """fact_locator, torch and transformers (what a trace records); a missing library is left out."""
    from fact_locator import __version__

    out = {"fact_locator": __version__}
    for dist in _LIBRARIES:
        if (found := _installed(dist)) is not None:
            out[dist] = found
    return out


def run_versions() -> dict[str, str]:
    """`library_versions` plus python and pytest (what a results file records)."""
    import pytest

    libraries = library_versions()
    return {
        "fact_locator": libraries.pop("fact_locator"),
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        **libraries,
    }
