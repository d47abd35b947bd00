"""Noise-scale sweep: how the total effect depends on the noise scale, so a user can choose it.

Only clean and corrupted runs are needed (no restorations), so a sweep is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.facts import Fact
from fact_locator.tracing.clean_run import clean_run
from fact_locator.tracing.corruption import calibrate_noise, make_noise
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.prompt import PreparedPrompt

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.tracer import Tracer

__all__ = ["SweepPoint", "noise_sweep"]

DEFAULT_SCALES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0)


@dataclass(frozen=True)
class SweepPoint:
    """Mean over facts at one noise scale (a multiple of the subject-embedding std)."""

    scale: float
    noise_std: float
    mean_p_clean: float
    mean_p_corrupt: float

    @property
    def mean_te(self) -> float:
        return self.mean_p_clean - self.mean_p_corrupt


def noise_sweep(tracer: Tracer, facts: Sequence[Fact], scales: Sequence[float] = DEFAULT_SCALES, mode: str = "gaussian") -> list[SweepPoint]:
    """TE at each scale, with one embedding std calibrated over all the facts' subjects."""
    loaded, settings = tracer.loaded, tracer.settings
    prepared = [tracer.prepare(f) for f in facts]
    cleans = [clean_run(tracer.engine, p) for p in prepared]
    embeddings = [c.embeddings for c in cleans]
    unit = calibrate_noise([e[p.subject_range[0]:p.subject_range[1]] for e, p in zip(embeddings, prepared)], 1.0, "sweep").std
    clean = [c.prob for c in cleans]
    points = []
    for scale in scales:
        corrupt = []
        for p, emb in zip(prepared, embeddings):
            start, end = p.subject_range
            draws = make_noise(settings.samples, end - start, emb.shape[-1], unit * scale, settings.seed, mode)
            corrupt.append(_probs(tracer, p, draws.to(device=loaded.device, dtype=emb.dtype))[:, p.target_id].mean().item())
        points.append(SweepPoint(scale, unit * scale, sum(clean) / len(clean), sum(corrupt) / len(corrupt)))
    return points


def _probs(tracer: Tracer, prepared: PreparedPrompt, draws: torch.Tensor) -> torch.Tensor:
    """The softmax at the last position of the prompt with `draws` added to its subject."""
    import torch

    loaded = tracer.loaded
    ids = torch.tensor([prepared.token_ids], device=loaded.device)
    start, end = prepared.subject_range
    rows = draws.shape[0]

    def corrupt(t: torch.Tensor) -> torch.Tensor:
        t[:, start:end] += draws
        return t

    with torch.inference_mode(), edit_outputs(loaded.model, {loaded.adapter.embed: corrupt}):
        logits = loaded.model(input_ids=ids.expand(rows, -1), use_cache=False).logits[:, -1, :].float()
    return torch.softmax(logits, dim=-1)
