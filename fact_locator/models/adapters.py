"""Architecture adapters: where each causal-tracing site lives in a transformers model.

The table is data, not code: one `ModelAdapter` per model class, giving the dotted paths
of the embedding module (where the noise goes in), the list of decoder layers (whose
outputs are the `hidden` sites), and, relative to one layer, the MLP and attention
modules whose outputs are the `mlp` and `attn` sites. To support a new architecture, add
one entry to `ADAPTERS` (or call `register_adapter`) and a tiny config to
`tests/test_adapters.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fact_locator.errors import UnsupportedArchitectureError

if TYPE_CHECKING:
    import torch

__all__ = ["ADAPTERS", "ModelAdapter", "adapter_for", "register_adapter", "supported_architectures"]


@dataclass(frozen=True)
class ModelAdapter:
    """Module paths of one architecture. Layer-relative paths are joined to `layers.<i>`."""

    architecture: str
    embed: str
    layers: str
    mlp: str
    attn: str
    final_norm: str
    # Why each quirk matters for tracing, where one applies.
    notes: str = ""

    def layer_path(self, layer: int) -> str:
        return f"{self.layers}.{layer}"

    def site_path(self, kind: str, layer: int) -> str:
        """Dotted path of the module whose output is the `kind` site at `layer`."""
        if kind == "hidden":
            return self.layer_path(layer)
        if kind == "mlp":
            return f"{self.layer_path(layer)}.{self.mlp}"
        if kind == "attn":
            return f"{self.layer_path(layer)}.{self.attn}"
        raise ValueError(f"unknown site kind {kind!r}")

    def num_layers(self, model: torch.nn.Module) -> int:
        return len(model.get_submodule(self.layers))


def _a(architecture: str, embed: str, layers: str, mlp: str, attn: str, final_norm: str, notes: str = "") -> ModelAdapter:
    return ModelAdapter(architecture, embed, layers, mlp, attn, final_norm, notes)


# fmt: off
ADAPTERS: dict[str, ModelAdapter] = {a.architecture: a for a in [
    #   model class            embedding                     decoder layers            mlp      attn         final norm
    _a("GPT2LMHeadModel",     "transformer.wte",            "transformer.h",          "mlp",   "attn",      "transformer.ln_f",
       "position embeddings are added after wte; noise goes on the token embeddings, as in ROME"),
    _a("GPTJForCausalLM",     "transformer.wte",            "transformer.h",          "mlp",   "attn",      "transformer.ln_f",
       "parallel attention and MLP read the same input"),
    _a("GPTNeoXForCausalLM",  "gpt_neox.embed_in",          "gpt_neox.layers",        "mlp",   "attention", "gpt_neox.final_layer_norm",
       "parallel residual by default"),
    _a("LlamaForCausalLM",    "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",
       "SmolLM2 is a Llama; grouped-query attention, so module outputs are patched, not heads"),
    _a("MistralForCausalLM",  "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm"),
    _a("Qwen2ForCausalLM",    "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm"),
    _a("Gemma3ForCausalLM",   "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",
       "the embedding module multiplies by sqrt(d): noise is calibrated on its output"),
    _a("PhiForCausalLM",      "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.final_layernorm",
       "parallel attention and MLP"),
    _a("OPTForCausalLM",      "model.decoder.embed_tokens", "model.decoder.layers",   "fc2",   "self_attn", "model.decoder.final_layer_norm",
       "no MLP module: fc2's output is the MLP output, computed on (batch*tokens, d)"),
]}
# fmt: on


def register_adapter(adapter: ModelAdapter) -> None:
    """Add or replace the adapter of one model class."""
    ADAPTERS[adapter.architecture] = adapter


def supported_architectures() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for(model: torch.nn.Module) -> ModelAdapter:
    """The adapter of `model`'s class; every path is checked to resolve."""
    name = type(model).__name__
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {name}: supported are {', '.join(supported_architectures())}. "
            "To add one, register a ModelAdapter with the dotted paths of its embedding, decoder "
            "layers, MLP, attention and final norm (fact_locator.register_adapter)"
        )
    for path in (adapter.embed, adapter.layers, adapter.final_norm, adapter.site_path("mlp", 0), adapter.site_path("attn", 0)):
        try:
            model.get_submodule(path)
        except AttributeError as exc:
            raise UnsupportedArchitectureError(
                f"{name}: module {path!r} named by its adapter does not exist in this model "
                "(a transformers version with another layout?)"
            ) from exc
    return adapter
