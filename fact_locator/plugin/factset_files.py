"""`FactSetFiles`: a marker a test module holds to collect fact-set files from elsewhere
(`audits/test_factsets.py`). The plugin's collection hook finds it (importable from
`fact_locator.plugin.collection` too)."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fact_locator.plugin.session import FactLocatorSession

__all__ = ["FactSetFiles"]


class FactSetFiles:
    """Put one in a test module to collect fact-set files from elsewhere with it:

        # audits/test_factsets.py
        from fact_locator.plugin.collection import FactSetFiles
        factsets = FactSetFiles()                       # the files --fl-factsets names
        extra = FactSetFiles("../more/*.yaml")          # a glob relative to this module

    Each matching file is collected as if pytest had walked into it (same node ids)."""

    def __init__(self, *globs: str):
        self.globs = globs

    def files(self, fl: FactLocatorSession, module_path: Path) -> list[Path]:
        if not self.globs:
            return fl.factset_files()
        found: dict[Path, None] = {}
        for pattern in self.globs:
            pattern_path = Path(pattern).expanduser()
            base = module_path.parent
            full = pattern_path if pattern_path.is_absolute() else base / pattern_path
            for m in sorted(glob.glob(str(full))):
                if Path(m).is_file():
                    found[Path(m).resolve()] = None
        return list(found)

    def __repr__(self) -> str:
        return f"FactSetFiles({', '.join(map(repr, self.globs))})"
