"""Corruption of the subject: the modes, calibration of the noise, and the draws.

Each mode is one entry of `CORRUPTION_MODES`: its name (the `corruption` setting; the names
are listed once more in `fact_locator.settings.CORRUPTIONS`, which parses without torch), what
it does, and how it makes one fact's additive corruption of the subject's embeddings, one row
per sample (samples, subject tokens, d). A noise mode also names its sampler: severed paths,
attribution patching and the noise sweep need random noise of a given std.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fact_locator.errors import FactError, UsageError
from fact_locator.facts import Fact
from fact_locator.tracing.prompt import PreparedPrompt
from fact_locator.tracing.settings import TraceSettings
from fact_locator.tracing.trace import NoiseInfo

if TYPE_CHECKING:
    import torch

    from fact_locator.models.loading import LoadedModel
    from fact_locator.tracing.reference_subjects import ReferenceSubjects

__all__ = [
    "CORRUPTION_MODES",
    "NOISE_MODES",
    "CorruptionMode",
    "CorruptionRequest",
    "calibrate_model_noise",
    "calibrate_noise",
    "corrupt",
    "make_noise",
    "model_noise",
    "noise_draws",
    "noise_for",
    "reference_embedding_std",
]


@dataclass(frozen=True)
class CorruptionRequest:
    """One fact to corrupt: its prompt and clean embeddings (tokens, d), the trace settings,
    the noise a fact set shares (None: the mode calibrates its own), and how to tokenize and
    embed another prompt (symmetric token replacement embeds other subjects)."""

    settings: TraceSettings
    prepared: PreparedPrompt
    embeddings: torch.Tensor
    noise: NoiseInfo | None
    prepare: Callable[[Fact], PreparedPrompt]
    embed: Callable[[PreparedPrompt], torch.Tensor]


# A noise sampler: (generator, (samples, subject tokens, d), std) -> float32 draws on the CPU.
Sampler = Callable[["torch.Generator", tuple[int, int, int], float], "torch.Tensor"]


@dataclass(frozen=True)
class CorruptionMode:
    name: str
    description: str
    # The fact's draws (float32, on the CPU) and the noise they stand for.
    corrupt: Callable[[CorruptionRequest], tuple[torch.Tensor, NoiseInfo]]
    sample: Sampler | None = None  # None: not random noise


def calibrate_noise(subject_embeddings: list[torch.Tensor], scale: float, what: str, source: str = "",
                    reference: str = "") -> NoiseInfo:
    """`scale` x the std of all elements of the subject-token embeddings, measured on the
    output of the embedding module (what enters layer 0: Gemma's sqrt(d) scaling included),
    on the CPU, so that every device gives the same number. `source` and `reference` go
    into the NoiseInfo as they are."""
    import torch

    values = torch.cat([e.detach().reshape(-1).float().cpu() for e in subject_embeddings])
    std = float(values.std().item())
    return NoiseInfo(std=scale * std, calibration=f"{scale:g} x std of subject-token embeddings ({what}) = {scale:g} x {std:.6g}",
                     source=source, reference=reference)


def reference_embedding_std(loaded: LoadedModel, subjects: ReferenceSubjects) -> tuple[float, int]:
    """ROME's `collect_embedding_std`: the std of the embedding-module outputs of every
    reference subject, each tokenized on its own (no prompt around it, no special tokens: the
    subject's own tokens, as a fact's calibration takes them), over all their elements; and
    how many subjects gave tokens."""
    import torch

    embed = loaded.model.get_submodule(loaded.adapter.embed)
    pieces = []
    with torch.inference_mode():
        for name in subjects.names:
            ids = list(loaded.tokenizer(name, add_special_tokens=False)["input_ids"])
            if ids:
                pieces.append(embed(torch.tensor([ids], device=loaded.device))[0].float().cpu())
    if not pieces:
        raise UsageError(f"{subjects.source}: no reference subject tokenizes, so the model's noise cannot be calibrated")
    return float(torch.cat([p.reshape(-1) for p in pieces]).std().item()), len(pieces)


def model_noise(std: float, n_subjects: int, scale: float, subjects: ReferenceSubjects) -> NoiseInfo:
    """The NoiseInfo of a model's noise, from its reference std (measured now or read from the cache)."""
    return NoiseInfo(std=scale * std,
                     calibration=f"{scale:g} x std of subject-token embeddings ({n_subjects} reference subjects, "
                                 f"each on its own) = {scale:g} x {std:.6g}",
                     source="model", reference=subjects.label)


def calibrate_model_noise(loaded: LoadedModel, subjects: ReferenceSubjects, scale: float) -> NoiseInfo:
    """`scale` x the model's reference std (`reference_embedding_std`)."""
    std, n_subjects = reference_embedding_std(loaded, subjects)
    return model_noise(std, n_subjects, scale, subjects)


def noise_for(settings: TraceSettings, prepared: PreparedPrompt, embeddings: torch.Tensor) -> NoiseInfo:
    """The settings' noise std if given, else calibrated on this fact's subject embeddings."""
    if settings.noise is not None:
        return NoiseInfo(std=float(settings.noise), calibration="given", source="given")
    start, end = prepared.subject_range
    return calibrate_noise([embeddings[start:end]], settings.noise_scale, f"this fact's {end - start} subject tokens",
                           source="fact")


def make_noise(
    samples: int, n_subject_tokens: int, width: int, std: float, seed: int, mode: str = "gaussian"
) -> torch.Tensor:
    """The `samples` noise draws of one fact, float32 on the CPU, so that every device,
    dtype and batch size sees the same numbers for the same seed.

    Draw i depends on the seed and i only, never on `samples`: the first n draws of m are
    the n draws, so a trace can be extended with more samples (`Tracer.extend`). One
    generator makes them one sample at a time; where a sample has a multiple of 16 numbers
    (every model whose width is a multiple of 16) these are the numbers one draw of the whole
    (samples, tokens, d) block gave, which torch does not keep prefix-stable otherwise."""
    import torch

    entry = CORRUPTION_MODES.get(mode)
    if entry is None or entry.sample is None:
        raise ValueError(f"unknown noise mode {mode!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    draws = [entry.sample(generator, (1, n_subject_tokens, width), std) for _ in range(samples)]
    return torch.cat(draws) if draws else torch.zeros((0, n_subject_tokens, width), dtype=torch.float32)


def corrupt(request: CorruptionRequest) -> tuple[torch.Tensor, NoiseInfo]:
    """The settings' corruption of one fact: its draws and the noise they stand for."""
    return CORRUPTION_MODES[request.settings.corruption].corrupt(request)


def noise_draws(settings: TraceSettings, prepared: PreparedPrompt, embeddings: torch.Tensor, noise: NoiseInfo | None,
                method: str) -> tuple[torch.Tensor, NoiseInfo]:
    """The draws of a method that needs random noise (`method` says which, as the subject of
    its error: "severed paths are"); the noise given, or calibrated on this fact."""
    if CORRUPTION_MODES[settings.corruption].sample is None:
        raise UsageError(f"{method} traced with noise ({' or '.join(NOISE_MODES)}), not corruption {settings.corruption!r}")
    if noise is None:
        noise = noise_for(settings, prepared, embeddings)
    start, end = prepared.subject_range
    return make_noise(settings.samples, end - start, embeddings.shape[-1], noise.std, settings.seed, settings.corruption), noise


def _gaussian(generator: torch.Generator, shape: tuple[int, int, int], std: float) -> torch.Tensor:
    import torch

    return torch.randn(shape, generator=generator, dtype=torch.float32) * std


def _uniform(generator: torch.Generator, shape: tuple[int, int, int], std: float) -> torch.Tensor:
    """Uniform on [-sqrt(3) std, sqrt(3) std]: the same standard deviation as `gaussian`."""
    import torch

    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1) * (std * 3**0.5)


def _noise(request: CorruptionRequest) -> tuple[torch.Tensor, NoiseInfo]:
    settings, prepared = request.settings, request.prepared
    noise = request.noise if request.noise is not None else noise_for(settings, prepared, request.embeddings)
    start, end = prepared.subject_range
    draws = make_noise(settings.samples, end - start, request.embeddings.shape[-1], noise.std, settings.seed, settings.corruption)
    return draws, noise


def _replacement_deltas(request: CorruptionRequest) -> tuple[torch.Tensor, NoiseInfo]:
    """The difference between a replacement subject's embeddings and the subject's, one row
    per replacement whose prompt tokenizes to the same length, with the same tokens outside
    the subject span, up to `samples` of them, in the order given."""
    import torch

    prepared, embeddings = request.prepared, request.embeddings
    fact = prepared.fact
    start, end = prepared.subject_range
    deltas, used = [], []
    for subject in fact.replacements:
        if len(deltas) == request.settings.samples:
            break
        if subject == fact.subject or not subject.strip():
            continue
        other = request.prepare(replace(fact, subject=subject, replacements=()))
        same_frame = (
            other.subject_range == (start, end)
            and other.token_ids[:start] == prepared.token_ids[:start]
            and other.token_ids[end:] == prepared.token_ids[end:]
        )
        if same_frame:
            deltas.append(request.embed(other)[start:end] - embeddings[start:end])
            used.append(subject)
    if not deltas:
        raise FactError(
            f"fact {fact.label!r}: symmetric token replacement needs another subject of {end - start} token(s) "
            f"that fits the prompt; none of {len(fact.replacements)} candidate(s) does (give `replacements:` "
            "in the fact, or more facts of the same relation)"
        )
    stacked = torch.stack(deltas).float()
    info = NoiseInfo(std=float(stacked.std().item()) if stacked.numel() > 1 else 0.0,
                     calibration=f"symmetric token replacement with {len(used)} subject(s): {', '.join(used)}",
                     source="replacement")
    return stacked, info


CORRUPTION_MODES: dict[str, CorruptionMode] = {mode.name: mode for mode in (
    CorruptionMode("gaussian", "Gaussian noise on the subject's embeddings (ROME)", _noise, _gaussian),
    CorruptionMode("uniform", "uniform noise of the same standard deviation", _noise, _uniform),
    CorruptionMode("str", "symmetric token replacement: another subject's embeddings in the subject's place", _replacement_deltas),
)}
NOISE_MODES: tuple[str, ...] = tuple(name for name, mode in CORRUPTION_MODES.items() if mode.sample is not None)
