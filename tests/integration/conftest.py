"""Fixtures shared by the command tests of this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama saved as a local transformers folder (safetensors + tokenizer), as a user passes one."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
