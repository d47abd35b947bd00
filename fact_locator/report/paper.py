"""The paper's figures (Meng et al. 2022, GPT-2 XL; see docs/causal-tracing.md) and this run's
max AIE rows beside them."""

from __future__ import annotations

from fact_locator.aggregate import Aggregate
from fact_locator.report.peaks import aggregate_kinds, max_aie
from fact_locator.report.percentages import interval_text, pct

__all__ = ["PAPER_AIE_LAST_SUBJECT", "PAPER_ATE", "PAPER_MODEL", "PAPER_N_FACTS", "PAPER_N_LAYERS",
           "PAPER_P_CLEAN", "PAPER_P_CORRUPT", "aie_rows"]

# GPT-2 XL (48 layers, 1209 known facts).
PAPER_MODEL = "GPT-2 XL"
PAPER_N_FACTS = 1209
PAPER_N_LAYERS = 48
PAPER_ATE = 0.186
PAPER_P_CLEAN = 0.270
PAPER_P_CORRUPT = 0.0847
# kind -> (layer or None, max AIE at the last subject token)
PAPER_AIE_LAST_SUBJECT: dict[str, tuple[int | None, float]] = {
    "hidden": (15, 0.087),
    "mlp": (None, 0.066),
    "attn": (None, 0.016),
}


def aie_rows(agg: Aggregate, layer_word: str) -> list[tuple[str, str, str, str]]:
    """(kind, category, this run, the paper) for the max AIE of each kind at the last subject
    token and at the last token, with intervals; `layer_word` is "layer " or "L"."""
    rows = []
    for kind in aggregate_kinds(agg):
        for category in ("last_subject", "last"):
            found = max_aie(agg, kind, category)
            ours = "—" if found is None else f"{pct(found[1])} ({layer_word}{found[0]})"
            ours += interval_text(agg, Aggregate.interval_key(kind, category))
            paper = "—"
            if category == "last_subject" and kind in PAPER_AIE_LAST_SUBJECT:
                layer, value = PAPER_AIE_LAST_SUBJECT[kind]
                paper = pct(value) + (f" ({layer_word}~{layer})" if layer is not None else "")
            rows.append((kind, category, ours, paper))
    return rows
