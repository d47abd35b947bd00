"""Which restorations a trace runs, and in what order: sites, the layers each restores, the
first layer each must compute, the forks, and the groups that share forwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from fact_locator.tracing.prompt import PreparedPrompt

__all__ = ["Shape", "Site", "SitePlan", "prompt_shape", "restored_layers"]

# Token count, subject span, read positions and rows per site: facts of one shape share
# restoration forwards.
Shape = tuple[int, tuple[int, int], int, int]


class Site(NamedTuple):
    """One restoration: `kind` at `layer` and `token` of the fact `fact` (an index into the
    facts traced together)."""

    fact: int
    kind: str
    layer: int
    token: int


def restored_layers(kind: str, layer: int, n_layers: int, window: int) -> range:
    """Layers restored for the site (kind, layer): one for `hidden`, a window for mlp/attn
    (ROME's code: layer - w//2 .. layer + w - w//2 - 1, clipped)."""
    if kind == "hidden":
        return range(layer, layer + 1)
    return range(max(0, layer - window // 2), min(n_layers, layer + window - window // 2))


def prompt_shape(prepared: PreparedPrompt) -> tuple[int, tuple[int, int], int]:
    """Token count, subject span and read positions (one, or the target's tokens when
    teacher-forced): facts whose prompts share them can share restoration forwards (same
    suffix lengths at every restored token, same logits read)."""
    return len(prepared.token_ids), prepared.subject_range, prepared.read_positions


@dataclass(frozen=True)
class SitePlan:
    """The sites of a trace with `kinds` on `n_layers` layers and windows of `window`.
    `suffix`: restoration runs take the KV-suffix path (run from the restored token and the
    first layer that differs from the corrupted run); otherwise every run is a whole-prompt
    forward from layer 0. `forks`: windows clipped at layer 0 start from a longer one's state."""

    n_layers: int
    kinds: tuple[str, ...]
    window: int
    suffix: bool
    forks_on: bool = True

    def window_of(self, site: Site) -> range:
        return restored_layers(site.kind, site.layer, self.n_layers, self.window)

    def site_count(self, prepared: PreparedPrompt) -> int:
        """Sites that run: before the subject no noise has entered, so their IE is 0. Only
        prompt positions are restored (a teacher-forced target's tokens never are)."""
        return len(self.kinds) * self.n_layers * (prepared.prompt_length - prepared.subject_range[0])

    def first_real_layer(self, kind: str, layer: int) -> int:
        """The first layer a restoration run must compute: layers before it see exactly the
        corrupted run. A restored hidden state is the output of its layer, so that layer can
        be replayed (with the restoration applied to the replayed output)."""
        if kind == "hidden":
            return layer + 1
        return restored_layers(kind, layer, self.n_layers, self.window).start

    def first_layers(self, sites: Sequence[Site], forks: dict[int, int]) -> list[int]:
        """The first layer each site computes: a fork's window end, else `first_real_layer`
        on the KV-suffix path, else 0."""
        return [self.window_of(s).stop if i in forks else self.first_real_layer(s.kind, s.layer) if self.suffix else 0
                for i, s in enumerate(sites)]

    def forks(self, sites: Sequence[Site]) -> dict[int, int]:
        """Sites that start from another site's state instead of layer 0 (KV-suffix path):
        {index: donor index}. Windows clipped at layer 0 share their start: an mlp or attn
        site restoring layers 0..e-1 of a token computes, up to layer e-1, exactly what a
        site of the same fact, kind and token does whose window starts at 0 too and ends
        later (both restore every layer so far, from the same corrupted embeddings). So it
        runs from layer e on only, from the donor's output of layer e - 1, restoring nothing
        itself. The donor is the longest such window in the batch."""
        if not (self.suffix and self.forks_on):
            return {}
        clipped = []  # (site, (fact, kind, token), window end) of the mlp/attn windows from layer 0
        for i, site in enumerate(sites):
            window = self.window_of(site)
            if site.kind != "hidden" and window.start == 0:
                clipped.append((i, (site.fact, site.kind, site.token), window.stop))
        longest: dict[tuple[int, str, int], tuple[int, int]] = {}  # (fact, kind, token) -> (window end, site)
        for i, key, end in clipped:
            if end > longest.get(key, (0, i))[0]:
                longest[key] = (end, i)
        return {i: longest[key][1] for i, key, end in clipped if end < longest[key][0]}

    def site_groups(self, shapes: Sequence[Shape]) -> list[tuple[Shape, int, list[Site]]]:
        """(shape, offset, sites) groups of the facts whose restoration runs have `shapes`
        (one per fact), each run as batches of one suffix. Facts of one shape batch
        together. On the KV-suffix path a group is one restored token, its sites of every
        kind and fact sorted by the first layer that must run (so a batch wastes no layer);
        otherwise a group is all sites, run from position 0."""
        by_shape: dict[Shape, list[int]] = {}
        for i, shape in enumerate(shapes):
            by_shape.setdefault(shape, []).append(i)
        # By first computed layer; among the windows that start at layer 0, the longest
        # first, so that a batch cut from them holds the site the others fork from (`forks`).
        order = lambda site: (self.first_real_layer(site.kind, site.layer), -self.window_of(site).stop)  # noqa: E731
        groups = []
        for shape, facts in by_shape.items():
            n_tokens, (start, _end), read, _rows = shape
            # The prompt's positions: a teacher-forced target's tokens (all read positions
            # but the first) are never restored.
            per_token = [[Site(f, kind, layer, token) for f in facts for kind in self.kinds for layer in range(self.n_layers)]
                         for token in range(start, n_tokens - read + 1)]
            if self.suffix:
                groups += [(shape, sites[0].token, sorted(sites, key=order)) for sites in per_token]
            else:
                groups.append((shape, 0, [site for sites in per_token for site in sites]))
        return groups
