"""Context-managed forward hooks that always come off the model.

In the spirit of baukit's `nethook`, but hooks are registered in `__enter__` (through an
`ExitStack`), so a wrong module name or an exception mid-forward never leaves a hook behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["StopForward", "edit_outputs", "main_tensor", "replace_main_tensor"]

# An edit receives the module's main output tensor and returns a replacement, or None to keep it.
Edit = Callable[["torch.Tensor"], "torch.Tensor | None"]


class StopForward(Exception):
    """Raised by an edit to end a forward early (e.g. right after the embeddings)."""


def main_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a module output: attention modules return tuples."""
    return output[0] if isinstance(output, tuple) else output


def replace_main_tensor(output: Any, tensor: torch.Tensor) -> Any:
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def edit_outputs(model: torch.nn.Module, edits: Mapping[str, Edit]) -> Iterator[None]:
    """Apply `edits` (dotted module path -> edit) to module outputs for the duration.

    `StopForward` raised by an edit is swallowed here, so a caller can stop a forward early.
    """
    with ExitStack() as stack:
        for path, edit in edits.items():
            module = model.get_submodule(path)
            handle = module.register_forward_hook(_hook(edit))
            stack.callback(handle.remove)
        try:
            yield
        except StopForward:
            pass


def _hook(edit: Edit) -> Callable[..., Any]:
    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        new = edit(main_tensor(output))
        return None if new is None else replace_main_tensor(output, new)

    return hook
