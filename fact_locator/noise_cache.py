"""The on-disk cache of each model's reference noise (`noise_calibration: model`): the std of
the reference subjects' embeddings, measured once per model and kept beside the traces, in
``<root>/noise/<key>.json``. The key is the model's weight fingerprint, its dtype and the
sha256 of the subject list; the noise scale is applied after reading, so one entry serves
every `noise_scale`. A file that does not parse is ignored and written again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from fact_locator.results.files import write_atomic

__all__ = ["NoiseCache", "ReferenceStd"]


@dataclass(frozen=True)
class ReferenceStd:
    """A model's reference std and how many subjects it was measured on."""

    std: float
    n_subjects: int


class NoiseCache:
    """Reference stds under `root`/noise; `enabled=False` neither reads nor writes."""

    def __init__(self, root: Path, enabled: bool = True):
        self.dir = Path(root) / "noise"
        self.enabled = enabled

    @staticmethod
    def key(model_fingerprint: str, dtype: str, subjects_sha256: str) -> str:
        text = json.dumps([model_fingerprint, dtype, subjects_sha256])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> ReferenceStd | None:
        if not self.enabled:
            return None
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
            return ReferenceStd(std=float(data["std"]), n_subjects=int(data["n_subjects"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: measure again

    def put(self, key: str, value: ReferenceStd) -> None:
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(key), json.dumps({"std": value.std, "n_subjects": value.n_subjects}))
