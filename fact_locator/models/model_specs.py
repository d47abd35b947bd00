"""What a model spec names: a built-in model, a local checkpoint folder, a ``.gguf`` file or a hub id.

Only the decision is made here; nothing is fetched or loaded. A spec that names nothing raises
`ModelLoadError` with a message saying what to give instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fact_locator.errors import ModelLoadError
from fact_locator.models.builtin_models import BUILTIN_MODELS, unknown_model_error
from fact_locator.models.model_cache import models_dir

__all__ = ["ModelSource", "resolve_spec"]


@dataclass(frozen=True)
class ModelSource:
    """A resolved spec. ``path`` is set for builtin (its cache folder), local_dir and gguf_file."""

    kind: Literal["builtin", "local_dir", "gguf_file", "hub_id"]
    spec: str
    path: Path | None


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_PATH_SUFFIXES = (".gguf", ".safetensors")


def resolve_spec(spec: str) -> ModelSource:
    """Decide what kind of model ``spec`` names; raise `ModelLoadError` when it names nothing."""
    if not isinstance(spec, str) or not spec.strip():
        raise unknown_model_error(str(spec))
    spec = spec.strip()
    if spec in BUILTIN_MODELS:
        return ModelSource("builtin", spec, models_dir(None) / spec)

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {spec} has no config.json: give a transformers checkpoint "
                "folder (config.json + *.safetensors), a .gguf file or a built-in model name"
            )
        return ModelSource("local_dir", spec, path.resolve())
    if path.is_file():
        if spec.lower().endswith(".gguf"):
            return ModelSource("gguf_file", spec, path.resolve())
        raise ModelLoadError(
            f"model path {spec} is a file but not a .gguf: give the directory holding "
            "config.json and the *.safetensors weights, or a .gguf file"
        )

    path_looking = (
        spec.startswith((".", "~"))
        or os.path.isabs(spec)
        or spec.lower().endswith(_PATH_SUFFIXES)
        or (os.altsep is not None and os.altsep in spec and os.altsep != "/")
    )
    if path_looking:
        raise ModelLoadError(f"model path not found: {spec}")
    if _HUB_ID.match(spec):
        return ModelSource("hub_id", spec, None)
    if os.sep in spec:  # e.g. a/b/c: a path, not a hub id
        raise ModelLoadError(f"model path not found: {spec}")
    raise unknown_model_error(spec)
