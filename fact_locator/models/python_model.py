"""Custom models named `python:module:function` (a test model, or one a user builds): the
module is imported and the function called; it must return a `LoadedModel`. Only the user's
own options may name one (never a fact set): importing it runs its code."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING

from fact_locator.errors import FactLocatorError, ModelLoadError
from fact_locator.settings import PYTHON_PREFIX

if TYPE_CHECKING:
    from fact_locator.models.loading import LoadedModel

__all__ = ["load_python_model"]


def load_python_model(spec: str, device: str = "auto", dtype: str = "float32") -> LoadedModel:
    """`python:module:function`: import `module`, call `function()` (passing `device` and
    `dtype` if it takes them) and check that it returns a LoadedModel."""
    from fact_locator.models.loading import LoadedModel

    body = spec[len(PYTHON_PREFIX):] if spec.startswith(PYTHON_PREFIX) else spec
    parts = body.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ModelLoadError(f"model {spec!r}: write a custom model as python:module:function")
    module_name, function_name = (p.strip() for p in parts)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"model {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelLoadError(f"model {spec!r}: module {module_name!r} has no function {function_name!r}")
    params = inspect.signature(function).parameters
    kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if k in params}
    try:
        loaded = function(**kwargs)
    except FactLocatorError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: one line, the cause chained
        raise ModelLoadError(f"model {spec!r}: {function_name}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, LoadedModel):
        raise ModelLoadError(
            f"model {spec!r}: {function_name}() returned {type(loaded).__name__}, not a LoadedModel "
            "(build one with fact_locator.models.loading.from_objects(model, tokenizer, name=...))"
        )
    return loaded
