"""Inline SVG for the HTML report: per-fact heatmaps, the per-set AIE line charts and the
per-fact severed-path charts.

Every string that comes from the results (tokens, kinds, categories) goes through
`markupsafe.escape`; the returned `Markup` is then safe to drop into the autoescaped
template. Heatmap cells are kept short (about 43 bytes each): their size and position come
from CSS (`geometry_css`), their colour from one of 16 per-palette classes `a`..`p`
(unquoted: valid HTML, not XML), and each carries its exact value in a `<title>` for hover."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from fact_locator.tracing.trace import SeveredPaths, Trace

__all__ = ["CELL", "LEVELS", "PALETTES", "geometry_css", "gradient_defs", "heatmap", "line_chart", "palette_css", "palette_for",
           "severed_chart"]

CELL = 14  # px, width and height of one heatmap cell
LEVELS = "abcdefghijklmnop"  # 16 colour levels, white -> the palette's darkest
PALETTES: dict[str, str] = {  # palette name -> darkest colour (the paper: purple, green, red)
    "purple": "#3f007d",
    "green": "#00441b",
    "red": "#67000d",
    "blue": "#08306b",
    "orange": "#7f2704",
    "grey": "#252525",
}
KIND_PALETTE = {"hidden": "purple", "mlp": "green", "attn": "red"}
OTHER_PALETTES = ("blue", "orange", "grey")

CATEGORY_STYLE: tuple[tuple[str, str, str], ...] = (  # category, label, colour
    ("first_subject", "first subject", "#1f77b4"),
    ("middle_subject", "middle subject", "#17becf"),
    ("last_subject", "last subject", "#d62728"),
    ("first_subsequent", "first subsequent", "#2ca02c"),
    ("further", "further tokens", "#9467bd"),
    ("last", "last token", "#ff7f0e"),
)


def palette_for(kind: str, kinds: Sequence[str]) -> str:
    if kind in KIND_PALETTE:
        return KIND_PALETTE[kind]
    others = [k for k in kinds if k not in KIND_PALETTE]
    index = others.index(kind) if kind in others else 0
    return OTHER_PALETTES[index % len(OTHER_PALETTES)]


def _mix(dark: str, t: float) -> str:
    r, g, b = (int(dark[i : i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(round(255 + (c - 255) * t) for c in (r, g, b)))


def level_colour(palette: str, level: int) -> str:
    return _mix(PALETTES[palette], level / (len(LEVELS) - 1))


def palette_css() -> Markup:
    rules = [".heatmap .cells{fill:#fff}"]  # inherited by the level-a cells (no class)
    for name in PALETTES:
        rules.append(f".pal-{name} .bar{{fill:url(#grad-{name})}}")
        for level, letter in enumerate(LEVELS):
            rules.append(f".pal-{name} .{letter}{{fill:{level_colour(name, level)}}}")
    return Markup("\n".join(rules))


def gradient_defs() -> Markup:
    """One hidden SVG with a white-to-dark gradient per palette, for the heatmap legends."""
    out = ['<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false"><defs>']
    for name, dark in PALETTES.items():
        out.append(
            f'<linearGradient id="grad-{name}"><stop offset="0" stop-color="#ffffff"/>'
            f'<stop offset="1" stop-color="{dark}"/></linearGradient>'
        )
    out.append("</defs></svg>")
    return Markup("".join(out))


def geometry_css(max_layers: int, max_tokens: int) -> Markup:
    """Cell size and position, shared by every heatmap of the page (rows are <g>, cells <rect>)."""
    rules = [f".heatmap .cells rect{{width:{CELL}px;height:{CELL}px}}"]
    rules += [f".heatmap .cells rect:nth-child({k + 1}){{x:{k * CELL}px}}" for k in range(1, max_layers)]
    rules += [f".heatmap .cells g:nth-child({r + 1}){{transform:translate(0,{r * CELL}px)}}" for r in range(1, max_tokens)]
    return Markup("\n".join(rules))


def value_text(value: float) -> str:
    if value == 0:
        return "0"
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _level(value: float, vmax: float) -> str:
    if vmax <= 0 or value != value:  # all zero, or NaN
        return LEVELS[0]
    t = min(1.0, max(0.0, value / vmax))
    return LEVELS[round(t * (len(LEVELS) - 1))]


def _text(value: str) -> str:
    """Escape for element content (quotes need no escaping there)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def token_label(token: str, limit: int = 16) -> str:
    text = repr(token)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def heatmap(trace: Trace, kind: str, palette: str, level: float = 0.95) -> Markup:
    """Tokens as rows, layers as columns (the paper's layout); subject tokens bold with '*'.
    A cell's hover text is its IE and, for a trace that kept its noise draws, the half-width of
    its t-interval at `level` ("0.300 ±0.041": the interval is symmetric, and the short form
    keeps a 1080-cell fact small)."""
    grid = trace.ie[kind]
    intervals = trace.ie_interval(kind, level)
    n_layers = len(grid)
    n_tokens = len(trace.tokens)
    start, end = trace.subject_range
    labels = [("*" if start <= i < end else "") + token_label(tok) for i, tok in enumerate(trace.tokens)]
    label_w = 12 + 7 * max((len(label) for label in labels), default=4)
    top = 6
    cells_h = n_tokens * CELL
    axis_y = top + cells_h + 12
    legend_y = axis_y + 10
    width = max(label_w + n_layers * CELL + 8, label_w + 16 * 8 + 120)
    height = legend_y + 22
    vmax = max((v for row in grid for v in row if v == v), default=0.0)
    p_layer, p_token, p_value = trace.peak(kind) if n_layers and n_tokens else (0, 0, 0.0)
    peak_token = trace.tokens[p_token] if 0 <= p_token < n_tokens else "?"
    out: list[str] = []
    out.append(
        f'<svg class="heatmap pal-{palette}" data-kind="{escape(kind)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(kind)} indirect effect heatmap">'
    )
    out.append(
        f"<title>{escape(kind)}: indirect effect by token (rows) and layer (columns); "
        f"max {value_text(p_value)} at L{p_layer} {escape(repr(peak_token))}"
        + (f"; ± half-width of the {level:.0%} t-interval over {intervals[0][0].n} noise samples" if intervals else "")
        + "</title>"
    )
    out.append(f'<g class="tok" transform="translate({label_w - 6},{top})">')
    for i, label in enumerate(labels):
        cls = ' class="s"' if start <= i < end else ""
        out.append(f'<text y="{i * CELL + CELL - 3}"{cls}>{_text(label)}</text>')
    out.append("</g>")
    out.append(f'<g class="cells" transform="translate({label_w},{top})">')
    # rows are tokens: cell (token t, layer l) = grid[l][t]
    for t in range(n_tokens):
        out.append("<g>")
        for layer in range(n_layers):
            value = grid[layer][t]
            level = _level(value, vmax)
            # level a is the default fill; the one-letter class goes unquoted (valid HTML) to
            # keep a cell at about 41 bytes: a 30 x 12 x 3 fact has 1080 of them
            cls = "" if level == LEVELS[0] else f" class={level}"
            spread = f" ±{intervals[layer][t].width / 2:.3f}" if intervals is not None else ""
            out.append(f"<rect{cls}><title>{value_text(value)}{spread}</title></rect>")
        out.append("</g>")
    out.append("</g>")
    if n_layers and n_tokens and vmax > 0:
        out.append(
            f'<rect class="pk" x="{label_w + p_layer * CELL}" y="{top + p_token * CELL}" width="{CELL}" height="{CELL}"/>'
        )
    step = 1 if n_layers <= 12 else 5
    out.append(f'<g class="ax" transform="translate({label_w + CELL // 2},{axis_y})">')
    for layer in range(0, n_layers, step):
        out.append(f'<text x="{layer * CELL}">{layer}</text>')
    out.append("</g>")
    out.append(f'<g class="lg" transform="translate({label_w},{legend_y})">')
    out.append(f'<text x="0" y="8">IE {escape(kind)}</text>')
    x0 = 70
    out.append(f'<text class="le" x="{x0 - 4}" y="8">{value_text(min(0.0, vmax))}</text>')
    out.append(f'<rect class="bar" x="{x0}" width="128" height="10"/>')
    out.append(f'<text x="{x0 + 132}" y="8">{value_text(vmax)}</text>')
    out.append(f'<text x="{x0 + 176}" y="8">layer →</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


# Severed paths (the paper's Figure 3): curve key, label, colour (the kinds' palettes).
SEVERED_STYLE: tuple[tuple[str, str, str], ...] = (
    ("hidden", "plain", "#6a51a3"),
    ("mlp", "MLP severed", "#238b45"),
    ("attn", "attn severed", "#cb181d"),
)


def line_chart(kind: str, curves: dict[str, tuple[float, ...]]) -> Markup:
    """AIE by layer, one line per token category (the paper's Figure 2), with a legend."""
    return _curves_chart(
        curves,
        CATEGORY_STYLE,
        head=f'class="aie-chart" data-kind="{escape(kind)}"',
        aria=f"average indirect effect of {escape(kind)} by layer",
        title=f"AIE of {escape(kind)} by layer and token category",
        x_label=f"layer ({escape(kind)})",
        value_word="max AIE",
    )


def severed_chart(severed: SeveredPaths) -> Markup:
    """IE by layer at the restored token: plain, and with the later MLPs / attention severed."""
    token = escape(repr(severed.token_text)) if severed.token_text else f"#{severed.token}"
    return _curves_chart(
        dict(severed.curves),
        SEVERED_STYLE,
        head='class="severed-chart"',
        aria=f"indirect effect of restoring the hidden state at {token} by layer, with later modules severed",
        title=f"severed paths at {token}: IE by layer",
        x_label=f"layer restored at {token}",
        value_word="max IE",
    )


def _curves_chart(
    curves: dict[str, tuple[float, ...]], styles: tuple[tuple[str, str, str], ...], *, head: str, aria: str, title: str,
    x_label: str, value_word: str,
) -> Markup:
    """A line chart by layer, one line per styled curve, with a legend. Text arguments are
    escaped by the caller."""
    width, height = 460, 200
    x0, y0, pw, ph = 44, 12, 270, 150
    n_layers = max((len(c) for c in curves.values()), default=0)
    values = [v for c in curves.values() for v in c if v == v and abs(v) != float("inf")]
    ymax = max(values, default=0.0)
    ymin = min(0.0, min(values, default=0.0))
    if ymax <= ymin:
        ymax = ymin + 1e-3

    def px(layer: int) -> float:
        return x0 + (pw * layer / (n_layers - 1) if n_layers > 1 else pw / 2)

    def py(value: float) -> float:
        return y0 + ph - ph * (value - ymin) / (ymax - ymin)

    out = [
        f'<svg {head} width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{aria}">',
        f"<title>{title}</title>",
        f'<path class="fr" d="M{x0} {y0}V{y0 + ph}H{x0 + pw}"/>',
    ]
    for value in (ymin, (ymin + ymax) / 2, ymax):
        out.append(f'<text class="yt" x="{x0 - 4}" y="{py(value) + 4:.1f}">{value_text(value)}</text>')
    step = 1 if n_layers <= 12 else 5
    for layer in range(0, n_layers, step):
        out.append(f'<text class="xt" x="{px(layer):.1f}" y="{y0 + ph + 14}">{layer}</text>')
    out.append(f'<text class="xt" x="{x0 + pw / 2:.0f}" y="{y0 + ph + 30}">{x_label}</text>')
    legend_y = y0 + 6
    for key, label, colour in styles:
        curve = curves.get(key)
        if not curve:
            continue
        finite = [i for i, v in enumerate(curve) if v == v and abs(v) != float("inf")]
        if not finite:
            continue
        best = max(finite, key=curve.__getitem__)
        points = " ".join(f"{px(i):.1f},{py(curve[i]):.1f}" for i in finite)
        out.append(
            f'<polyline class="ln" stroke="{colour}" points="{points}"><title>{label}: {value_word} '
            f"{value_text(curve[best])} at L{best}</title></polyline>"
        )
        out.append(f'<path class="ln" stroke="{colour}" d="M{x0 + pw + 12} {legend_y}h18"/>')
        out.append(f'<text class="lgt" x="{x0 + pw + 34}" y="{legend_y + 4}">{label}</text>')
        legend_y += 16
    out.append("</svg>")
    return Markup("".join(out))
