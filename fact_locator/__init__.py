"""fact-locator: audit where a language model stores its facts (causal tracing, ROME)."""

from __future__ import annotations

__version__ = "0.1.0"
