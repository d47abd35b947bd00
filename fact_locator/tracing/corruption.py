"""Gaussian corruption of the subject embeddings: calibration and the noise draws."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fact_locator.tracing.trace import NoiseInfo

if TYPE_CHECKING:
    import torch

__all__ = ["calibrate_noise", "make_noise"]


def calibrate_noise(subject_embeddings: list[torch.Tensor], scale: float, what: str) -> NoiseInfo:
    """`scale` x the std of all elements of the subject-token embeddings, measured on the
    output of the embedding module (what enters layer 0: Gemma's sqrt(d) scaling included)."""
    import torch

    values = torch.cat([e.reshape(-1).float() for e in subject_embeddings])
    std = float(values.std().item())
    return NoiseInfo(std=scale * std, calibration=f"{scale:g} x std of subject-token embeddings ({what}) = {scale:g} x {std:.6g}")


def make_noise(
    samples: int, n_subject_tokens: int, width: int, std: float, seed: int, mode: str = "gaussian"
) -> torch.Tensor:
    """The `samples` noise draws of one fact, float32 on the CPU, so that every device,
    dtype and batch size sees the same numbers for the same seed. `uniform` noise has the
    same standard deviation as `gaussian` (uniform on [-sqrt(3) std, sqrt(3) std])."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (samples, n_subject_tokens, width)
    if mode == "gaussian":
        return torch.randn(shape, generator=generator, dtype=torch.float32) * std
    if mode == "uniform":
        return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1) * (std * 3**0.5)
    raise ValueError(f"unknown noise mode {mode!r}")
