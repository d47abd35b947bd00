"""Which noise a fact is traced with, for the `Locator`: the given std, the model's (one per
model, as ROME, measured once on the reference subjects and kept on disk beside the traces),
the fact set's (measured once on its facts' subject tokens), or None: each fact calibrated on
its own subject by the tracer. The `Locator` keeps what these functions measure (`_noise`,
`_reference_std`) so that each is measured once per session.

torch is imported only when a noise is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fact_locator.errors import FactLocatorError, UsageError

if TYPE_CHECKING:
    from fact_locator.factset import FactSet
    from fact_locator.locator import Locator
    from fact_locator.tracing.settings import TraceSettings
    from fact_locator.tracing.trace import NoiseInfo

__all__ = ["calibrate_factset", "choose_noise", "model_noise"]


def choose_noise(locator: Locator, factset: FactSet | None, settings: TraceSettings) -> NoiseInfo | None:
    """The noise the fact set's facts (or a lone fact) are traced with: the given std, or
    by `noise_calibration` the model's (`model_noise`), the fact set's (`noise_scale` x
    the std of all its facts' subject-token embeddings, computed once), or None: each
    fact calibrated on its own subject (`fact`, in the tracer)."""
    from fact_locator.tracing.trace import NoiseInfo

    if settings.noise is not None:
        return NoiseInfo(std=float(settings.noise), calibration="given", source="given")
    if settings.noise_calibration == "model":
        return model_noise(locator, locator.model_for(factset), settings.noise_scale)
    if settings.noise_calibration == "fact":
        return None
    if factset is None:
        raise UsageError("noise_calibration factset needs a fact set; a lone fact takes model or fact")
    spec = locator.model_for(factset)
    key = (spec, str(factset.path), factset.name, tuple((s.fact.subject, s.fact.relation) for s in factset.facts),
           settings.noise_scale)
    with locator._lock:
        if key not in locator._noise:
            locator._noise[key] = calibrate_factset(locator, factset, settings, spec)
        return locator._noise[key]


def calibrate_factset(locator: Locator, factset: FactSet, settings: TraceSettings, spec: str) -> NoiseInfo:
    """`noise_scale` x the std of the subject-token embeddings of the fact set's facts (those
    that tokenize; the others report their own errors)."""
    from fact_locator.tracing.corruption import calibrate_noise

    tracer = locator.tracer(settings, spec)
    pieces = []
    for fact_spec in factset.facts:
        try:
            prepared = tracer.prepare(fact_spec.fact)
        except FactLocatorError:
            continue  # the fact's own items report it
        start, end = prepared.subject_range
        pieces.append(tracer.embed(prepared)[start:end])
    if not pieces:
        raise UsageError(f"fact set {factset.name!r}: no fact could be tokenized, so the noise cannot be calibrated")
    return calibrate_noise(pieces, settings.noise_scale, f"{len(pieces)} facts of fact set {factset.name!r}",
                           source="factset", reference=str(factset.path))


def model_noise(locator: Locator, spec: str | None = None, noise_scale: float = 3.0) -> NoiseInfo:
    """The model's noise: `noise_scale` x the std of the reference subjects' embeddings
    (`tracing/reference_subjects.py`), measured once per model weights, dtype and subject
    list and kept in the cache folder (`noise_cache.py`; not with use_cache off)."""
    from fact_locator.noise_cache import NoiseCache, ReferenceStd
    from fact_locator.tracing.corruption import model_noise as scaled_noise
    from fact_locator.tracing.corruption import reference_embedding_std
    from fact_locator.tracing.reference_subjects import reference_subjects

    spec = spec or locator.model_spec
    subjects = reference_subjects()
    with locator._lock:
        measured = locator._reference_std.get(spec)
        if measured is None:
            loaded = locator.load(spec)
            disk = NoiseCache(locator.cache.root, enabled=locator.use_cache)
            key = NoiseCache.key(loaded.identity.fingerprint, locator.dtype, subjects.sha256)
            measured = disk.get(key)
            if measured is None:
                measured = ReferenceStd(*reference_embedding_std(loaded, subjects))
                disk.put(key, measured)
            locator._reference_std[spec] = measured
    return scaled_noise(measured.std, measured.n_subjects, noise_scale, subjects)
