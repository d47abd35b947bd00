"""The on-disk trace cache: one JSON file per (model, fact, settings, noise, version).

Layout: ``<root>/traces/<key[:2]>/<key>.json``. Writes are atomic (a temporary file in the
same folder, then ``os.replace``), so concurrent writers (pytest-xdist workers, two runs)
never leave a half-written entry; the last complete write wins. A corrupt or unreadable
entry is reported once with a warning, removed, and treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fact_locator.cache_location import CACHE_ENV, default_cache_dir
from fact_locator.errors import CacheError, ResultsError
from fact_locator.facts import Fact
from fact_locator.tracing.trace import Trace

__all__ = ["CACHE_ENV", "TraceCache", "TraceCacheWarning", "default_cache_dir"]

_KEY = re.compile(r"^[0-9a-f]{16,128}$")


class TraceCacheWarning(UserWarning):
    """A cache entry could not be used; it was removed and will be traced again."""


def _canonical(value: Any) -> Any:
    """JSON-able, order-independent form of settings values (tuples -> lists, Paths -> str)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):  # enums
        return value.value
    return str(value)


class TraceCache:
    """Traces on disk, keyed by `TraceCache.key(...)`. `enabled=False` makes every call a no-op miss."""

    def __init__(self, root: Path | str | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.enabled = enabled
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"TraceCache({str(self.root)!r}, enabled={self.enabled})"

    @property
    def traces_dir(self) -> Path:
        return self.root / "traces"

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def key(model_fingerprint: str, fact: Fact, settings: dict, noise_std: float | None, version: str) -> str:
        """sha256 of the canonical JSON (sorted keys) of everything a trace depends on.

        The fact enters by what changes the numbers (subject, relation, target, distractor,
        replacement subjects), not by id and tags: they do not change
        the numbers, so renaming a fact keeps its cached trace (the trace's `fact_id` is
        the one it was first traced under)."""
        payload = {
            "model": model_fingerprint,
            "fact": {"subject": fact.subject, "relation": fact.relation, "target": fact.target,
                     "distractor": fact.distractor, "replacements": list(fact.replacements)},
            "settings": _canonical(dict(settings)),
            "noise_std": noise_std,
            "version": version,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.match(key):
            raise CacheError(f"not a trace cache key: {key!r} (expected a hex digest from TraceCache.key)")
        return self.traces_dir / key[:2] / f"{key}.json"

    # -- entries -------------------------------------------------------------------------------
    def get(self, key: str) -> Trace | None:
        """The cached trace, or None on a miss, when disabled, or when the entry is unusable."""
        if not self.enabled:
            return None
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._discard(key, path, f"cannot read it ({exc})")
            return None
        try:
            return Trace.from_json(text)
        except (json.JSONDecodeError, ResultsError, TypeError, ValueError, AttributeError) as exc:
            self._discard(key, path, f"{type(exc).__name__}: {exc}")
            return None

    def put(self, key: str, trace: Trace) -> None:
        """Store `trace` under `key`, atomically; raises CacheError when the folder is not writable."""
        if not self.enabled:
            return
        from fact_locator.results import write_atomic

        path = self.path(key)
        try:
            write_atomic(path, trace.to_json())
        except OSError as exc:
            raise CacheError(
                f"cannot write the trace cache entry {path} ({exc.strerror or exc}); "
                f"set ${CACHE_ENV} to a writable folder or disable the cache"
            ) from exc

    def __contains__(self, key: str) -> bool:
        return self.enabled and self.path(key).is_file()

    def _files(self) -> Iterator[Path]:
        if not self.traces_dir.is_dir():
            return
        for sub in sorted(self.traces_dir.iterdir()):
            if sub.is_dir():
                for path in sorted(sub.glob("*.json")):
                    if not path.name.startswith(".") and _KEY.match(path.stem):
                        yield path

    def entries(self) -> list[str]:
        """The keys of all complete entries, sorted."""
        return [p.stem for p in self._files()]

    def __len__(self) -> int:
        return sum(1 for _ in self._files())

    def clear(self) -> int:
        """Remove every entry (and leftover temporary files); returns the number of entries removed."""
        removed = 0
        if not self.traces_dir.is_dir():
            return 0
        for sub in self.traces_dir.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                is_entry = path.suffix == ".json" and _KEY.match(path.stem) is not None
                is_temp = path.name.startswith(".") and path.name.endswith(".tmp")
                if is_entry or is_temp:
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    removed += is_entry
            try:
                sub.rmdir()
            except OSError:
                pass
        return removed

    def _discard(self, key: str, path: Path, why: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"fact-locator: ignoring the corrupt trace cache entry {path} ({why}); it is removed and will be traced again",
                TraceCacheWarning,
                stacklevel=3,
            )
        try:
            path.unlink()
        except OSError:
            pass
