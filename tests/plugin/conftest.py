"""Plugin tests run inner pytest sessions (pytester) on tiny random models: the model is
`python:fl_tiny:llama`, the trace cache a temp folder, samples 2 (tests/support/pytester_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pytester_harness import FL, import_heavy_modules


@pytest.fixture(scope="session")
def _heavy_imports() -> None:
    import_heavy_modules()


@pytest.fixture
def fl(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _heavy_imports: None) -> FL:
    return FL(pytester, tmp_path, monkeypatch, subprocess_timeout=120)
