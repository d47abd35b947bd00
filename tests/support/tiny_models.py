"""Tiny randomly initialized models of every supported architecture, built from configs
(2 layers, d_model 64), and a small byte-level BPE tokenizer to go with them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": dict(n_layer=2, n_embd=64, n_head=4, n_positions=128),
    "gptj": dict(n_layer=2, n_embd=64, n_head=4, n_positions=128, rotary_dim=8),
    "gpt_neox": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128),
    "llama": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    "mistral": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    "qwen2": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    "gemma3_text": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, head_dim=16),
    "phi": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "opt": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, ffn_dim=128, word_embed_proj_dim=64, max_position_embeddings=128),
}

CORPUS = [
    "The Colosseum is located in the country of Italy",
    "The Eiffel Tower is located in the city of Paris",
    "The Space Needle is located in the city of Seattle",
    "Toyota was founded in the country of Japan",
    "The mother tongue of Dante Alighieri is Italian",
    "Mount Fuji is the highest mountain of Japan",
]


@lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"])
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def tiny_model(model_type: str, seed: int = 0, layers: int | None = None) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    vocab = len(tiny_tokenizer())
    extra = dict(TINY_CONFIGS[model_type])
    if layers is not None:
        key = "n_layer" if "n_layer" in extra else "num_hidden_layers"
        extra[key] = layers
    config = AutoConfig.for_model(model_type, vocab_size=vocab, bos_token_id=0, eos_token_id=0, pad_token_id=0, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    # Random init gives near-uniform outputs; sharper weights make effects visible in tests.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    return model.eval()


def tiny_loaded(model_type: str, seed: int = 0, layers: int | None = None) -> Any:
    from fact_locator.models.loading import from_objects

    return from_objects(tiny_model(model_type, seed, layers), tiny_tokenizer(), name=f"tiny-{model_type}")
