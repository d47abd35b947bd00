"""One trace in the terminal: the numbers and a colored heatmap per kind (tokens x layers)."""

from __future__ import annotations

from typing import Any

from fact_locator.tracing.trace import Trace

__all__ = ["render_trace"]

KIND_COLORS = {"hidden": (128, 0, 128), "mlp": (0, 110, 0), "attn": (180, 0, 0)}
# The confidence level of the intervals shown (tracing/uncertainty.py says which interval).
LEVEL = 0.95
KIND_TITLES = {"hidden": "hidden state (single layer)", "mlp": "MLP output (window)", "attn": "attention output (window)"}


def render_trace(trace: Trace, console: Any) -> None:
    """Print p_clean, p_corrupt, TE and one heatmap per traced kind to a rich Console."""
    from rich.text import Text

    console.print(f"[bold]{trace.prompt}[/bold] -> target {trace.target_token!r} (model's top-1: {trace.top_token!r})")
    method = trace.settings.get("method")
    if method:
        console.print(f"[bold yellow]{method}[/bold yellow]")
    console.print(
        f"p_clean = {trace.p_clean:.4f}   p_corrupt = {trace.p_corrupt:.4f}   TE = {trace.te:.4f}"
        + (f" (in {trace.metric}: clean {trace.clean_value:.4f}, corrupted {trace.corrupt_value:.4f})" if trace.metric != "prob" else "")
    )
    te_interval = trace.te_interval(LEVEL)
    if te_interval is not None:
        console.print(f"TE {LEVEL:.0%} interval [{te_interval.low:.4f}, {te_interval.high:.4f}] "
                      f"over {te_interval.n} noise samples (t-interval, SE {te_interval.se:.4f})")
    console.print(f"corruption: {trace.settings.get('corruption', 'gaussian')}, std {trace.noise.std:.4g} ({trace.noise.calibration})")
    start, end = trace.subject_range
    label_width = min(24, max(len(repr(t)) for t in trace.tokens) + 2)
    for kind in trace.kinds:
        grid = trace.grid(kind)
        layer, token, value = trace.peak(kind)
        top = max(value, 1e-9)
        console.print()
        console.print(
            f"[bold]{kind}[/bold]: {KIND_TITLES[kind]}; peak IE {value:.4f} at layer {layer}, "
            f"token {token} {trace.tokens[token]!r} ({trace.categories[token].value})"
        )
        uncertainty = _peak_uncertainty(trace, kind, layer, token)
        if uncertainty:
            console.print(uncertainty)
        header = Text(" " * (label_width + 2))
        for l in range(trace.n_layers):
            header.append(f"{l:<2}" if l % 5 == 0 else "  ")
        console.print(header, no_wrap=True, overflow="crop")
        for t, tok in enumerate(trace.tokens):
            mark = "*" if start <= t < end else " "
            line = Text(f"{mark} {repr(tok)[:label_width]:<{label_width}}")
            for l in range(trace.n_layers):
                cell = grid[l][t]
                line.append("##" if (l, t) == (layer, token) else "  ", style=f"on {_shade(kind, cell / top)}")
            console.print(line, no_wrap=True, overflow="crop")
        console.print(f"  (* subject token; darker = larger IE; scale 0 .. {top:.3f}; ## = peak)")


def _peak_uncertainty(trace: Trace, kind: str, layer: int, token: int) -> str:
    """The peak's IE interval and how often resampling the noise samples keeps the peak at
    this site and in this token category; empty for a trace without its samples."""
    intervals = trace.ie_interval(kind, LEVEL)
    by_site = trace.peak_probability(kind, by="site")
    by_category = trace.peak_probability(kind, by="category")
    if intervals is None or by_site is None or by_category is None:
        return ""
    peak = intervals[layer][token]
    category = trace.categories[token].value
    return (f"  IE {LEVEL:.0%} interval [{peak.low:.4f}, {peak.high:.4f}]; the peak stays at this site in "
            f"{by_site.get((layer, token), 0.0):.0%} of resamples of the noise samples, in a {category} token in "
            f"{by_category.get(category, 0.0):.0%}")


def _shade(kind: str, fraction: float) -> str:
    fraction = min(1.0, max(0.0, fraction))
    r, g, b = KIND_COLORS[kind]
    mix = lambda c: int(255 + (c - 255) * fraction)  # noqa: E731 - white -> kind color
    return f"rgb({mix(r)},{mix(g)},{mix(b)})"
