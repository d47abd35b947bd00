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


POISONED_SUBJECT = "Zorblax"


def llama_nan_on_zorblax(device: str = "cpu", dtype: str = "float32") -> Any:
    """The tiny llama whose embeddings turn NaN in any prompt holding the subject "Zorblax":
    one fact of a set fails for its own reason (NaN in its trace) while the others trace."""
    import torch

    from tests.support.tiny_models import tiny_loaded

    loaded = tiny_loaded("llama")
    poison = loaded.tokenizer(POISONED_SUBJECT, add_special_tokens=False)["input_ids"]

    def nan_rows(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        ids = args[0]
        for row in range(ids.shape[0]):
            tokens = ids[row].tolist()
            if any(tokens[i:i + len(poison)] == poison for i in range(len(tokens) - len(poison) + 1)):
                output = output.clone()
                output[row] = float("nan")
        return output

    loaded.model.get_input_embeddings().register_forward_hook(nan_rows)
    return loaded
