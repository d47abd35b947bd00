"""Architecture adapters: where each causal-tracing site lives in a transformers model.

The table is data, not code: one `ModelAdapter` per model class, giving the dotted paths
of the embedding module (where the noise goes in), the list of decoder layers (whose
outputs are the `hidden` sites), and, relative to one layer, the MLP and attention
modules whose outputs are the `mlp` and `attn` sites, and the MLP's activation. An
architecture's quirks are fields too (`mlp_flat`), and what configs call each size is one
table (`CONFIG_NAMES`). To support a new architecture, add one entry to `ADAPTERS` (or call
`register_adapter`) and a tiny config to `tests/tiny_models.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.errors import UnsupportedArchitectureError

if TYPE_CHECKING:
    import torch

__all__ = ["ADAPTERS", "CONFIG_NAMES", "ModelAdapter", "adapter_for", "config_size", "register_adapter", "supported_architectures"]

# What transformers' configs call each size, by naming family (Llama's, GPT-2's, OPT's); the
# first name set to a positive integer wins.
CONFIG_NAMES: dict[str, tuple[str, ...]] = {
    "width": ("hidden_size", "n_embd", "d_model"),  # of the residual stream: what every layer and MLP outputs
    "mlp_width": ("intermediate_size", "n_inner", "ffn_dim"),
    "layers": ("num_hidden_layers", "n_layer"),
    "heads": ("num_attention_heads", "n_head"),
    "vocab": ("vocab_size",),
    "context": ("max_position_embeddings", "n_positions", "n_ctx"),
}


def config_size(config: Any, size: str) -> int | None:
    """The size `size` (a key of `CONFIG_NAMES`) of a model config (of its text part, for a
    multimodal one), or None when the config does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in CONFIG_NAMES[size]:
        value = getattr(text, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


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
    # The MLP's activation module, relative to one layer: where "gelu_new" runs as one kernel
    # while tracing (`tracing.kernels.tanh_gelu_sites`). Empty: none is swapped.
    activation: str = ""
    # The MLP site's module works on (batch * tokens, d) rows instead of (batch, tokens, d).
    mlp_flat: bool = False

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

    def as_tokens(self, kind: str, output: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """A `kind` site's output as (rows, tokens, d) (a flat MLP output is reshaped)."""
        if kind == "mlp" and self.mlp_flat:
            return output.reshape(-1, n_tokens, output.shape[-1])
        return output


def _a(architecture: str, embed: str, layers: str, mlp: str, attn: str, final_norm: str, activation: str, notes: str = "",
       mlp_flat: bool = False) -> ModelAdapter:
    return ModelAdapter(architecture, embed, layers, mlp, attn, final_norm, notes, activation, mlp_flat)


# fmt: off
ADAPTERS: dict[str, ModelAdapter] = {a.architecture: a for a in [
    #   model class            embedding                     decoder layers            mlp      attn         final norm                        activation
    _a("GPT2LMHeadModel",     "transformer.wte",            "transformer.h",          "mlp",   "attn",      "transformer.ln_f",               "mlp.act",
       "position embeddings are added after wte; noise goes on the token embeddings, as in ROME"),
    _a("GPTJForCausalLM",     "transformer.wte",            "transformer.h",          "mlp",   "attn",      "transformer.ln_f",               "mlp.act",
       "parallel attention and MLP read the same input"),
    _a("GPTNeoXForCausalLM",  "gpt_neox.embed_in",          "gpt_neox.layers",        "mlp",   "attention", "gpt_neox.final_layer_norm",      "mlp.act",
       "parallel residual by default"),
    _a("LlamaForCausalLM",    "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",                     "mlp.act_fn",
       "SmolLM2 is a Llama; grouped-query attention, so module outputs are patched, not heads"),
    _a("MistralForCausalLM",  "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",                     "mlp.act_fn"),
    _a("Qwen2ForCausalLM",    "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",                     "mlp.act_fn"),
    _a("Gemma3ForCausalLM",   "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.norm",                     "mlp.act_fn",
       "the embedding module multiplies by sqrt(d): noise is calibrated on its output"),
    _a("PhiForCausalLM",      "model.embed_tokens",         "model.layers",           "mlp",   "self_attn", "model.final_layernorm",          "mlp.activation_fn",
       "parallel attention and MLP"),
    _a("OPTForCausalLM",      "model.decoder.embed_tokens", "model.decoder.layers",   "fc2",   "self_attn", "model.decoder.final_layer_norm", "activation_fn",
       "no MLP module: fc2's output is the MLP output, computed on (batch*tokens, d)", mlp_flat=True),
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
