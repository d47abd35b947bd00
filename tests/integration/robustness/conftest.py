"""Shared set-up for the bad-input suite: a pytester wired for fact-locator (tiny model,
temp trace cache, a trace log; tests/support/pytester_harness.py) and tiny model folders on
disk, each broken in one way. The checks every case makes are in clean_failure.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fact_locator.settings import CACHE_ENV
from tests.support.pytester_harness import FL, import_heavy_modules


@pytest.fixture(autouse=True)
def _trace_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fact-locator trace` writes the trace cache: here a temp folder, never the user's."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cli-cache"))


@pytest.fixture(scope="session")
def _heavy_imports() -> None:
    import_heavy_modules()


@pytest.fixture
def fl(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _heavy_imports: None) -> FL:
    return FL(pytester, tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny model folders, each broken in one way (and one good one)."""
    import shutil

    from tests.support.tiny_models import tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    tiny_model("llama").save_pretrained(good)
    tiny_tokenizer().save_pretrained(good)
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    weights = next(truncated.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_tokenizer = root / "no-tokenizer"
    tiny_model("llama").save_pretrained(no_tokenizer)
    pickled = root / "pickle-only"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    no_config = root / "no-config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    (root / "garbage.gguf").write_bytes(b"this is not a GGUF file at all")
    (root / "zeros.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    (root / "weights.txt").write_text("not a model")
    import numpy as np
    import gguf

    writer = gguf.GGUFWriter(str(root / "foo-arch.gguf"), "foo")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"good": good, "truncated": truncated, "no-tokenizer": no_tokenizer, "pickle-only": pickled,
            "no-config": no_config, "garbage.gguf": root / "garbage.gguf", "zeros.gguf": root / "zeros.gguf",
            "foo-arch.gguf": root / "foo-arch.gguf", "weights.txt": root / "weights.txt",
            "missing": root / "does-not-exist"}
