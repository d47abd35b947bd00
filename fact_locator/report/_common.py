"""What the terminal and HTML reports share: outcome ranking, peak sites, the paper's figures.

Reports read only `RunResults` (never a model, never torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fact_locator.aggregate import Aggregate
from fact_locator.results import AuditOutcome, FactResult, FactSetResult
from fact_locator.tracing.trace import SeveredPaths, Trace

# Worst first. "traced" is a fact that was traced but that no audit looked at.
OUTCOME_ORDER: tuple[str, ...] = ("failed", "error", "xpassed", "passed", "xfailed", "skipped", "traced")
OUTCOME_RANK: dict[str, int] = {name: i for i, name in enumerate(OUTCOME_ORDER)}

# Meng et al. 2022, GPT-2 XL (48 layers, 1209 known facts); see docs/causal-tracing.md.
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

KIND_ORDER = ("hidden", "mlp", "attn")


def rank(outcome: str) -> int:
    return OUTCOME_RANK.get(outcome, len(OUTCOME_ORDER))


def worst(outcomes: list[str]) -> str:
    return min(outcomes, key=rank) if outcomes else "traced"


def fact_outcome(fact: FactResult) -> str:
    """The worst outcome of the fact's audits; an unknown fact counts as skipped, a fact
    whose trace failed as an error, a traced fact that no audit looked at as 'traced'."""
    candidates = [o.outcome for o in fact.outcomes]
    if fact.status == "unknown":
        candidates.append("skipped")
    elif fact.status == "error":
        candidates.append("error")
    return worst(candidates)


def set_outcome(factset: FactSetResult) -> str:
    return worst([o.outcome for o in factset.outcomes])


def notable(outcomes: list[AuditOutcome]) -> list[AuditOutcome]:
    """Audits worth a message (everything but a plain pass), worst first, stable."""
    found = [o for o in outcomes if o.outcome != "passed"]
    return sorted(found, key=lambda o: rank(o.outcome))


def fact_reason(fact: FactResult) -> str:
    if fact.status == "unknown":
        return fact.status_reason or "the model does not know this fact (clean top-1 is not the target)"
    if fact.status == "error":
        return fact.status_reason or "the trace failed"
    return fact.status_reason


def trace_kinds(traces: list[Trace | None]) -> list[str]:
    """Kinds traced by any of `traces`: hidden, mlp, attn first, then the others as met."""
    seen: list[str] = []
    for trace in traces:
        if trace is None:
            continue
        for kind in trace.kinds:
            if kind not in seen:
                seen.append(kind)
    return sorted(seen, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), seen.index(k)))


def aggregate_kinds(agg: Aggregate | None) -> list[str]:
    if agg is None:
        return []
    kinds = list(agg.aie)
    return sorted(kinds, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), kinds.index(k)))


@dataclass(frozen=True)
class Peak:
    layer: int
    token: int
    value: float
    token_text: str

    def __str__(self) -> str:
        return f"L{self.layer} {self.token_text!r} {self.value:.3f}"


def peak(trace: Trace | None, kind: str) -> Peak | None:
    if trace is None or kind not in trace.ie:
        return None
    grid = trace.ie[kind]
    if not grid or not any(grid):
        return None
    layer, token, value = trace.peak(kind)
    if value == float("-inf"):
        return None
    text = trace.tokens[token] if 0 <= token < len(trace.tokens) else f"#{token}"
    return Peak(layer, token, value, text)


def max_aie(agg: Aggregate | None, kind: str, category: str) -> tuple[int, float] | None:
    if agg is None:
        return None
    try:
        return agg.max_aie(kind, category)
    except (KeyError, ValueError):
        return None


def model_summary(model: dict[str, Any]) -> dict[str, str]:
    fingerprint = str(model.get("fingerprint", "") or "")
    return {
        "name": str(model.get("name", "?")),
        "architecture": str(model.get("architecture", "?")),
        "n_layers": str(model.get("n_layers", "?")),
        "fingerprint": fingerprint[:12],
        "dtype": str(model.get("dtype", "")),
    }


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


APPROXIMATE_BADGE = "approximate (AtP)"


def is_approximate(trace: Trace | None) -> bool:
    """A trace made by attribution patching (settings["method"] starts with 'atp')."""
    return trace is not None and str(trace.settings.get("method", "")).startswith("atp")


def run_method(settings: dict[str, Any], traces: list[Trace | None]) -> dict[str, str]:
    """metric, corruption and method of a run: its settings, else its first trace's."""
    first = next((t for t in traces if t is not None), None)
    trace_settings = first.settings if first is not None else {}
    method = str(settings.get("method") or ("atp" if is_approximate(first) else "exact"))
    if any(is_approximate(t) for t in traces):
        method = "atp"
    return {
        "metric": str(settings.get("metric") or trace_settings.get("metric") or (first.metric if first else "prob")),
        "corruption": str(settings.get("corruption") or trace_settings.get("corruption") or "gaussian"),
        "method": method,
    }


def interval_text(agg: Aggregate | None, key: str, scale: float = 100.0, unit: str = "%") -> str:
    """' [low, high] 95%' for an aggregate's stored interval, '' without one."""
    if agg is None or key not in agg.intervals:
        return ""
    iv = agg.intervals[key]
    level = float(iv.get("level", 0.95))
    return f" [{scale * float(iv['low']):.1f}{unit}, {scale * float(iv['high']):.1f}{unit}] at {level:.0%}"


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


def severed_of(fact: FactResult) -> SeveredPaths | None:
    """A fact's severed paths: recorded by --fl-severed, or carried by its trace (trace --severed)."""
    if fact.severed is not None:
        return fact.severed
    return fact.trace.severed if fact.trace is not None else None


def severed_text(severed: SeveredPaths | None) -> str:
    """'through MLP 62.5%, through attention 12.5% (hidden peak L4, IE 0.300)'."""
    if severed is None:
        return ""
    text = f"through MLP {pct(severed.shares.get('mlp'))}, through attention {pct(severed.shares.get('attn'))}"
    return text + f" (hidden peak L{severed.peak_layer}, IE {severed.peak_ie:.3f})"
