"""What a trace keeps of each noise draw: the metric of every corrupted run and of every
restoration run, so that the trace's means, their uncertainty (`tracing/uncertainty.py`) and
a trace extended with more draws (`Tracer.extend`) all come from the same numbers.

Draw i's restoration run and corrupted run share draw i's noise: the IE of a site in draw i
is `restored[i] - corrupt[i]`, a paired difference, and TE in draw i is
`clean - corrupt[i]`. The trace's IE grid is the mean over draws, computed here in float64
from the engine's float32 values, so that a fresh trace and one extended to the same draws
get the same means whatever order the draws were run in.

In JSON each array is base64 of its little-endian float32 bytes: lossless for the values the
engine computes (float32), and about 5.3 characters a value against ~20 for a list of
decimals; a 30-layer, 10-token, 3-kind trace of 64 draws takes about 300 kB."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fact_locator.errors import ResultsError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SAMPLE_ENCODING", "SampleEffects"]

SAMPLE_ENCODING = "base64 float32 little-endian"


@dataclass(frozen=True)
class SampleEffects:
    """One trace's values per noise draw, as float32 bytes (so that traces compare and
    round-trip exactly): `corrupt_probs` / `corrupt_values` (n,) the target's probability and
    the metric in each corrupted run; `restored[kind]` (layers, tokens, n) the metric of each
    restoration run. Sites that are never run (before the subject, where no noise reaches)
    hold the corrupted run's value: their IE is exactly 0 in every draw."""

    n: int
    n_layers: int
    n_tokens: int
    corrupt_probs: bytes
    corrupt_values: bytes
    restored: dict[str, bytes]

    def __post_init__(self) -> None:
        per_draw = 4 * self.n
        if len(self.corrupt_probs) != per_draw or len(self.corrupt_values) != per_draw:
            raise ResultsError(f"per-sample effects: {self.n} samples need {per_draw} bytes of corrupted values")
        for kind, data in self.restored.items():
            if len(data) != per_draw * self.n_layers * self.n_tokens:
                raise ResultsError(f"per-sample effects of {kind!r}: not {self.n_layers} layers x {self.n_tokens} tokens x {self.n} samples")

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, corrupt_probs: np.ndarray, corrupt_values: np.ndarray, restored: Mapping[str, np.ndarray]) -> SampleEffects:
        """From arrays: (n,), (n,) and per kind (layers, tokens, n)."""
        import numpy as np

        n = int(np.asarray(corrupt_values).shape[0])
        shapes = {np.asarray(a).shape for a in restored.values()}
        n_layers, n_tokens, _ = shapes.pop() if shapes else (0, 0, n)
        return cls(n=n, n_layers=n_layers, n_tokens=n_tokens, corrupt_probs=_bytes(corrupt_probs), corrupt_values=_bytes(corrupt_values),
                   restored={kind: _bytes(values) for kind, values in restored.items()})

    def concat(self, more: SampleEffects) -> SampleEffects:
        """These draws followed by `more`'s, of the same sites."""
        import numpy as np

        if (more.n_layers, more.n_tokens, set(more.restored)) != (self.n_layers, self.n_tokens, set(self.restored)):
            raise ValueError("per-sample effects of different sites cannot be joined")
        return SampleEffects.from_arrays(
            np.concatenate([self.corrupt_prob_array(), more.corrupt_prob_array()]),
            np.concatenate([self.corrupt_value_array(), more.corrupt_value_array()]),
            {kind: np.concatenate([self.restored_array(kind), more.restored_array(kind)], axis=2) for kind in self.restored},
        )

    # -- arrays --------------------------------------------------------------------------
    def corrupt_prob_array(self) -> np.ndarray:
        return _array(self.corrupt_probs, (self.n,))

    def corrupt_value_array(self) -> np.ndarray:
        return _array(self.corrupt_values, (self.n,))

    def restored_array(self, kind: str) -> np.ndarray:
        if kind not in self.restored:
            raise KeyError(f"kind {kind!r} was not traced (traced: {', '.join(self.restored)})")
        return _array(self.restored[kind], (self.n_layers, self.n_tokens, self.n))

    def ie_array(self, kind: str) -> np.ndarray:
        """IE of every site in every draw, float64 (layers, tokens, n): restored - corrupted."""
        import numpy as np

        return self.restored_array(kind).astype(np.float64) - self.corrupt_value_array().astype(np.float64)

    def te_array(self, clean_value: float) -> np.ndarray:
        """TE in every draw, float64 (n,): the clean value less each corrupted run's."""
        import numpy as np

        return clean_value - self.corrupt_value_array().astype(np.float64)

    # -- the means a trace reports ---------------------------------------------------------
    def p_corrupt(self) -> float:
        return float(self.corrupt_prob_array().astype("float64").mean())

    def corrupt_value(self) -> float:
        return float(self.corrupt_value_array().astype("float64").mean())

    def ie_grid(self, kind: str) -> tuple[tuple[float, ...], ...]:
        """Mean IE of each site: the mean restored value less the mean corrupted value."""
        means = self.restored_array(kind).astype("float64").mean(axis=2) - self.corrupt_value()
        return tuple(tuple(float(v) for v in row) for row in means)

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "encoding": SAMPLE_ENCODING,
            "shape": [self.n_layers, self.n_tokens],
            "corrupt_probs": _b64(self.corrupt_probs),
            "corrupt_values": _b64(self.corrupt_values),
            "restored": {kind: _b64(data) for kind, data in self.restored.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleEffects:
        if data.get("encoding") != SAMPLE_ENCODING:
            raise ResultsError(f"per-sample effects in an unknown encoding {data.get('encoding')!r} (expected {SAMPLE_ENCODING!r})")
        try:
            n_layers, n_tokens = (int(v) for v in data["shape"])
            return cls(
                n=int(data["n"]), n_layers=n_layers, n_tokens=n_tokens,
                corrupt_probs=_unb64(data["corrupt_probs"]), corrupt_values=_unb64(data["corrupt_values"]),
                restored={str(kind): _unb64(text) for kind, text in dict(data["restored"]).items()},
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ResultsError(f"per-sample effects unreadable: {type(exc).__name__}: {exc}") from exc


def _bytes(values: Any) -> bytes:
    import numpy as np

    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def _array(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    return np.frombuffer(data, dtype="<f4").reshape(shape)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
