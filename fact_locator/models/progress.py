"""The one-line status shown on stderr while a model is fetched and converted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["Progress"]


class Progress:
    """A one-line status on stderr (rich), or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if self._console is None:
            yield
            return
        if self._console.is_terminal:
            with self._console.status(f"fact-locator: {message}"):
                yield
            self._console.print(f"[dim]fact-locator:[/] {message} [green]done[/]", highlight=False, soft_wrap=True)
        else:
            self._console.print(f"fact-locator: {message}", highlight=False, soft_wrap=True)
            yield

    def note(self, message: str) -> None:
        if self._console is not None:
            self._console.print(f"fact-locator: {message}", highlight=False, soft_wrap=True)
