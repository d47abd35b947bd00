"""fact-locator: audit where a language model stores its facts (causal tracing, ROME).

The public API is `__all__`. Names are imported on first use, so `import fact_locator`
(and the pytest plugin) stays fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Aggregate": "fact_locator.aggregate",
    "aggregate": "fact_locator.aggregate",
    "Fact": "fact_locator.facts",
    "LoadedModel": "fact_locator.models.loading",
    "load_model": "fact_locator.models.loading",
    "ModelAdapter": "fact_locator.models.adapters",
    "register_adapter": "fact_locator.models.adapters",
    "ModelIdentity": "fact_locator.models.identity",
    "NoiseInfo": "fact_locator.tracing.trace",
    "TokenCategory": "fact_locator.tracing.trace",
    "Trace": "fact_locator.tracing.trace",
    "TraceSettings": "fact_locator.tracing.settings",
    "Tracer": "fact_locator.tracing.tracer",
    "RunResults": "fact_locator.results",
    "FactLocatorError": "fact_locator.errors",
    "FactError": "fact_locator.errors",
    "FactSetError": "fact_locator.errors",
    "ModelLoadError": "fact_locator.errors",
    "UnsupportedArchitectureError": "fact_locator.errors",
    "DeviceError": "fact_locator.errors",
    "TraceError": "fact_locator.errors",
    "UsageError": "fact_locator.errors",
    "ResultsError": "fact_locator.errors",
    "CacheError": "fact_locator.errors",
    "ExpectationFailed": "fact_locator.errors",
    "ExpectationUndecided": "fact_locator.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fact_locator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
