"""The trace cache's key for one fact: what changes a trace's numbers (the model's weights,
the fact, the trace settings, the device, the noise std, the method and the package version)
and nothing that does not (the batch size, the fact's id). The `Locator` and the Ray actors
both key with it, so a trace written by one is found by the other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fact_locator.facts import Fact
    from fact_locator.models.loading import LoadedModel
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.trace import NoiseInfo

__all__ = ["trace_key"]

# Settings that do not change a trace's numbers (the device does, slightly: it is in the key).
# The noise calibration does only through the noise std, which is in the key.
_NOT_IN_KEY = ("batch_size", "noise_calibration")


def trace_key(loaded: LoadedModel, fact: Fact, settings: TraceSettings, noise: NoiseInfo, method: str,
              adaptive: bool = False) -> str:
    """The sha256 key of the fact's trace under `settings`, `noise` and `method`. Under
    `samples: auto` (`adaptive`) the key holds "auto" instead of the sample count: its entry is
    the fact's trace with as many draws as the rounds so far gave it (`adaptive_samples.py`),
    rewritten as rounds extend it."""
    from fact_locator import __version__
    from fact_locator.cache import TraceCache

    data: dict[str, Any] = {k: v for k, v in settings.to_dict().items() if k not in _NOT_IN_KEY}
    if data.get("target_metric") == "first":
        del data["target_metric"]  # first-token keys stay as they were before the setting existed
    data["device"] = loaded.device
    if adaptive:
        data["samples"] = "auto"
    if method != "exact":  # exact keys stay as they were: no method in them means exact
        data["method"] = method
    # Noise is drawn one sample at a time (so that a trace can be extended); torch's numbers
    # stayed those of one block draw only where a sample has a multiple of 16 values: other
    # widths get new keys, so that no cached trace of the old draws is taken for the new.
    width = _width(loaded)
    if width is not None and width % 16:
        data["draws"] = "per-sample"
    return TraceCache.key(loaded.identity.fingerprint, fact, data, noise.std, __version__)


def _width(loaded: LoadedModel) -> int | None:
    from fact_locator.models.adapters import config_size

    config = getattr(getattr(loaded, "model", None), "config", None)
    return config_size(config, "width") if config is not None else None
