"""Every architecture in the adapter table works on a tiny random model built from a config."""

import pytest
import torch

from fact_locator.errors import UnsupportedArchitectureError
from fact_locator.models.adapters import ADAPTERS, adapter_for, supported_architectures
from fact_locator.tracing.hooks import edit_outputs, main_tensor
from tests.support.tiny_models import TINY_CONFIGS, tiny_model, tiny_tokenizer

ARCHS = sorted(TINY_CONFIGS)


def test_the_table_covers_the_promised_architectures():
    for name in ["GPT2LMHeadModel", "GPTJForCausalLM", "GPTNeoXForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                 "Qwen2ForCausalLM", "Gemma3ForCausalLM", "PhiForCausalLM", "OPTForCausalLM"]:
        assert name in ADAPTERS


@pytest.mark.parametrize("arch", ARCHS)
def test_every_site_of_a_tiny_model_resolves_and_has_token_shaped_outputs(arch):
    model = tiny_model(arch)
    adapter = adapter_for(model)
    assert adapter.num_layers(model) == 2
    ids = torch.tensor([tiny_tokenizer()("The Colosseum is in")["input_ids"]] * 3)
    n_tokens, width = ids.shape[1], model.get_submodule(adapter.embed).weight.shape[1]
    seen = {}

    def record(path):
        def edit(t):
            seen[path] = tuple(t.shape)
        return edit

    paths = [adapter.embed] + [adapter.site_path(k, l) for k in ("hidden", "mlp", "attn") for l in range(2)]
    with torch.no_grad(), edit_outputs(model, {p: record(p) for p in paths}):
        model(ids)
    flat = {adapter.site_path("mlp", l) for l in range(2)} if adapter.mlp_flat else set()
    for path in paths:
        # OPT's fc2 works on (batch * tokens, d): its adapter says so, and the tracer views
        # it as (batch, tokens, d).
        assert seen[path] == ((3 * n_tokens, width) if path in flat else (3, n_tokens, width)), path
        assert tuple(adapter.as_tokens("mlp" if path in flat else "hidden", torch.zeros(seen[path]), n_tokens).shape) == (3, n_tokens, width)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_activation_of_every_mlp_is_where_its_adapter_says(arch):
    """The adapter's `activation` path leads to each layer's MLP activation: the module the
    tracer swaps for a one-kernel GELU where it is transformers' "gelu_new"."""
    model = tiny_model(arch)
    adapter = adapter_for(model)
    activations = [model.get_submodule(f"{adapter.layer_path(l)}.{adapter.activation}") for l in range(2)]
    assert {type(a).__name__ for a in activations} <= {"NewGELUActivation", "GELUActivation", "GELUTanh", "SiLUActivation", "ReLU"}


def test_config_sizes_are_read_by_every_naming_family():
    from transformers import GPT2Config, LlamaConfig, OPTConfig

    from fact_locator.models.adapters import config_size

    gpt2 = GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=128)
    assert [config_size(gpt2, s) for s in ("width", "layers", "heads", "context", "mlp_width")] == [64, 3, 4, 128, None]
    llama = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
    assert [config_size(llama, s) for s in ("width", "layers", "mlp_width")] == [32, 2, 96]
    assert config_size(OPTConfig(hidden_size=16, ffn_dim=48), "mlp_width") == 48


def test_an_unsupported_architecture_names_the_supported_ones_and_how_to_add_one():
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("bloom", vocab_size=64, hidden_size=32, n_layer=1, n_head=2)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedArchitectureError) as info:
        adapter_for(model)
    message = str(info.value)
    assert "BloomForCausalLM" in message
    for name in supported_architectures():
        assert name in message
    assert "register_adapter" in message


def test_hooks_come_off_even_when_the_forward_fails():
    model = tiny_model("llama")
    adapter = adapter_for(model)

    def boom(t):
        raise RuntimeError("mid-forward failure")

    with pytest.raises(RuntimeError, match="mid-forward"):
        with edit_outputs(model, {adapter.site_path("mlp", 1): boom, adapter.embed: lambda t: None}):
            model(torch.tensor([[1, 2, 3]]))
    assert all(not m._forward_hooks for m in model.modules())


def test_a_wrong_module_name_leaves_no_hook_behind():
    model = tiny_model("gpt2")
    adapter = adapter_for(model)
    with pytest.raises(AttributeError):
        with edit_outputs(model, {adapter.embed: lambda t: None, "transformer.h.9.mlp": lambda t: None}):
            pass
    assert all(not m._forward_hooks for m in model.modules())


def test_main_tensor_takes_the_first_element_of_tuple_outputs():
    t = torch.zeros(1)
    assert main_tensor((t, None)) is t
    assert main_tensor(t) is t
