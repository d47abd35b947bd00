"""File hashes: the sha256 of one file, and the fingerprint of a model folder's weights.

The fingerprint names the weights in trace-cache keys and results, so a changed checkpoint
is never mistaken for the one traced before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from fact_locator.errors import ModelLoadError
from fact_locator.models.cache_writes import write_json_atomic

__all__ = ["FINGERPRINT_FILE", "sha256_file", "weights_fingerprint"]

#: Name of the file caching `weights_fingerprint` next to the weights.
FINGERPRINT_FILE = ".fact_locator_fingerprint.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over ``config.json`` and the sorted ``*.safetensors`` files of ``model_dir``.

    Each file contributes its name, its size and its bytes. The result is cached in
    ``.fact_locator_fingerprint.json`` keyed by every file's (name, size, mtime_ns), so it is
    computed once; if the cache file cannot be written (read-only folder) it is just recomputed.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"), key=lambda p: p.name)
    config = model_dir / "config.json"
    if config.is_file():
        files = [config, *files]
    if not files:
        raise ModelLoadError(f"{model_dir} holds no config.json or *.safetensors to fingerprint")
    key = []
    for path in files:
        stat = path.stat()
        key.append([path.name, stat.st_size, stat.st_mtime_ns])

    cache_file = model_dir / FINGERPRINT_FILE
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key and isinstance(cached.get("sha256"), str):
            return cached["sha256"]

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    result = digest.hexdigest()
    with contextlib.suppress(OSError):
        write_json_atomic(cache_file, {"key": key, "sha256": result})
    return result
