"""The checks every bad-input case makes: one clear line, no traceback, no half-written output."""

from __future__ import annotations

import json
from pathlib import Path


def assert_one_clean_line(text: str, *needles: str) -> None:
    """The error text names what is wrong (every needle) and holds no traceback."""
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def assert_no_partial_files(folder: Path) -> None:
    """No temporary file left behind, and every results/report/trace file is complete."""
    leftovers = [p for p in folder.rglob("*.tmp")]
    assert not leftovers, leftovers
    for path in folder.rglob("*.json"):
        if "fl-cache" in path.parts or path.name.startswith("."):
            continue
        json.loads(path.read_text(encoding="utf-8"))
    for path in folder.rglob("*.html"):
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path
