"""Test models for the plugin tests, reachable as `--fl-model python:fl_tiny:<function>`."""

from __future__ import annotations

from typing import Any


def llama(device: str = "cpu", dtype: str = "float32") -> Any:
    from tests.support.tiny_models import tiny_loaded

    return tiny_loaded("llama")


def gpt2() -> Any:
    from tests.support.tiny_models import tiny_loaded

    return tiny_loaded("gpt2")


def broken() -> Any:
    raise RuntimeError("no weights here")


def not_a_model() -> Any:
    return 42


def llama_seed1(device: str = "cpu", dtype: str = "float32") -> Any:
    """The same tiny llama with other random weights: a 'fine-tuned' model for baseline tests."""
    from tests.support.tiny_models import tiny_loaded

    return tiny_loaded("llama", seed=1)
