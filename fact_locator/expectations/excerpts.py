"""What a check's message shows besides its numbers: an excerpt of the IE grid or the AIE
curve around the site it looked at, and readable labels for tokens and fact counts."""

from __future__ import annotations

from fact_locator.aggregate import Aggregate
from fact_locator.tracing.trace import TokenCategory, Trace

__all__ = ["curve_excerpt", "facts_count", "grid_excerpt", "token_label"]


def facts_count(n: int) -> str:
    return f"{n} fact" if n == 1 else f"{n} facts"


def token_label(trace: Trace, token: int) -> str:
    text = trace.tokens[token] if 0 <= token < len(trace.tokens) else "?"
    cats = [c.value for c in TokenCategory if token in trace.positions(c)]
    return f"token {token} {text!r} ({', '.join(cats) or 'no category'})"


def grid_excerpt(trace: Trace, kind: str, layer: int, token: int, rows: int = 2, cols: int = 2) -> str:
    """A few layers around `layer` and tokens around `token` of `kind`'s grid, 3 decimals;
    the cell at (layer, token) is marked with `*`."""
    grid = trace.grid(kind)
    n_layers, n_tokens = len(grid), len(grid[0]) if grid else 0
    lo_l, hi_l = max(0, layer - rows), min(n_layers, layer + rows + 1)
    lo_t, hi_t = max(0, token - cols), min(n_tokens, token + cols + 1)
    heads = [f"{t}:{_short(trace.tokens[t]) if t < len(trace.tokens) else '?'}" for t in range(lo_t, hi_t)]
    width = max([9, *(len(h) for h in heads)])
    lines = [f"    {kind + ' IE':<9} " + "".join(h.rjust(width) + " " for h in heads)]
    for l in range(lo_l, hi_l):
        cells = []
        for t in range(lo_t, hi_t):
            mark = "*" if (l, t) == (layer, token) else " "
            cells.append(f"{grid[l][t]:.3f}".rjust(width) + mark)
        lines.append(f"    layer {l:>3} " + "".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str, limit: int = 10) -> str:
    text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def curve_excerpt(agg: Aggregate, kind: str, category: str, layer: int, rows: int = 2) -> str:
    """A few layers of `kind`'s AIE curve at `category` around `layer` (marked with `*`)."""
    curve = agg.curve(kind, category)
    lo, hi = max(0, layer - rows), min(len(curve), layer + rows + 1)
    cells = ", ".join(f"{l}: {curve[l]:.3f}{'*' if l == layer else ''}" for l in range(lo, hi))
    return f"    {kind} AIE at {category} by layer: {cells}"
