"""Where fact-locator keeps its cache: converted models in ``<root>/models``, traces in ``<root>/traces``.

The root is ``$FACT_LOCATOR_CACHE`` when set, else the user cache folder. The trace cache, the
model sources and the CLI all ask `default_cache_dir`, so they agree on one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from fact_locator.settings import CACHE_ENV

__all__ = ["CACHE_ENV", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$FACT_LOCATOR_CACHE`` if set, else the user cache dir for ``fact-locator``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "fact-locator"
    return Path(platformdirs.user_cache_dir("fact-locator"))
