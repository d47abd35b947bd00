"""Builders of fake RunResults for the report tests: hand-made traces, no model."""

from __future__ import annotations

import math
from dataclasses import asdict

from fact_locator.aggregate import aggregate
from fact_locator.results import AuditOutcome, FactResult, FactSetResult, RunResults
from fact_locator.models.identity import ModelIdentity
from fact_locator.tracing.trace import NoiseInfo, SeveredPaths, Trace

MODEL = ModelIdentity(name="smollm2-135m", architecture="LlamaForCausalLM", n_layers=30, fingerprint="abc")
NOISE = NoiseInfo(0.1, "given")
KINDS = ("hidden", "mlp", "attn")
EVIL = "<script>alert(1)</script> \"double\" 'single' & </svg>"


def grid_with_peak(n_layers: int, n_tokens: int, peak: tuple[int, int], height: float, start: int) -> tuple[tuple[float, ...], ...]:
    """IE 0 before the subject (`start`), a clear Gaussian bump at `peak`, a small floor elsewhere."""
    pl, pt = peak
    rows = []
    for layer in range(n_layers):
        row = []
        for token in range(n_tokens):
            if token < start:
                row.append(0.0)
                continue
            bump = height * math.exp(-((layer - pl) ** 2) / 8.0) * (1.0 if token == pt else 0.15)
            row.append(round(bump + 0.001 * ((layer * 7 + token * 3) % 5), 6))
        rows.append(tuple(row))
    return tuple(rows)


def dense_grid(n_layers: int, n_tokens: int, salt: int) -> tuple[tuple[float, ...], ...]:
    """Every cell non-zero with 3 significant decimals: the worst case for the HTML size."""
    return tuple(
        tuple(0.101 + ((layer * 37 + token * 11 + salt * 5) % 89) / 100.0 for token in range(n_tokens)) for layer in range(n_layers)
    )


def make_trace(
    fact_id: str,
    subject: str,
    relation: str,
    target: str,
    tokens: list[str],
    subject_range: tuple[int, int],
    *,
    n_layers: int = 30,
    p_clean: float = 0.75,
    p_corrupt: float = 0.05,
    kinds: tuple[str, ...] = KINDS,
    dense: bool = False,
) -> Trace:
    n_tokens = len(tokens)
    start, end = subject_range
    last_subject, last = end - 1, n_tokens - 1
    peaks = {"hidden": (n_layers // 2, last_subject), "mlp": (n_layers // 6, last_subject), "attn": ((3 * n_layers) // 4, last)}
    heights = {"hidden": 0.55, "mlp": 0.35, "attn": 0.2}
    ie = {}
    for i, kind in enumerate(kinds):
        if dense:
            ie[kind] = dense_grid(n_layers, n_tokens, i)
        else:
            ie[kind] = grid_with_peak(n_layers, n_tokens, peaks.get(kind, (0, last)), heights.get(kind, 0.1), start)
    model = ModelIdentity(MODEL.name, MODEL.architecture, n_layers, MODEL.fingerprint)
    return Trace(
        model=model,
        fact_id=fact_id,
        subject=subject,
        relation=relation,
        prompt=relation.replace("{}", subject),
        tokens=tuple(tokens),
        token_ids=tuple(range(100, 100 + n_tokens)),
        subject_range=subject_range,
        target=target,
        target_token=target.split()[0] if target.strip() else target,
        target_id=7,
        top_token=target.split()[0] if target.strip() else target,
        p_clean=p_clean,
        p_corrupt=p_corrupt,
        ie=ie,
        settings={"samples": 10, "window": 10, "kinds": list(kinds), "metric": "prob", "seed": 0},
        noise=NOISE,
    )


def audit(fact_id: str, expectation: str, outcome: str, message: str = "") -> AuditOutcome:
    return AuditOutcome(nodeid=f"tests/test_facts.py::test_{expectation}[{fact_id}]", expectation=expectation, outcome=outcome, message=message, duration=0.5)


def colosseum(fact_id: str = "colosseum", **kw) -> Trace:
    return make_trace(
        fact_id,
        "The Colosseum",
        "{} is located in the country of",
        " Italy",
        ["The", " Col", "os", "seum", " is", " located", " in", " the", " country", " of"],
        (0, 4),
        **kw,
    )


def space_needle(fact_id: str = "space-needle", **kw) -> Trace:
    return make_trace(
        fact_id,
        "The Space Needle",
        "{} is located in the city of",
        " Seattle",
        ["The", " Space", " Need", "le", " is", " located", " in", " the", " city", " of"],
        (0, 4),
        **kw,
    )


def eiffel(fact_id: str = "eiffel", **kw) -> Trace:
    return make_trace(
        fact_id,
        "the Eiffel Tower",
        "In Paris stands {}, which is made of",
        " iron",
        ["In", " Paris", " stands", " the", " E", "iff", "el", " Tower", ",", " which", " is", " made", " of"],
        (3, 8),
        **kw,
    )


def severed_paths(n_layers: int = 30) -> SeveredPaths:
    """Severed paths at the Colosseum's last subject token 'seum': the hidden effect peaks at
    L4 (IE 0.3); 62.5% of it goes through the later MLPs, 12.5% through attention."""
    hidden = tuple(round(0.3 * math.exp(-((layer - 4) ** 2) / 8.0), 6) for layer in range(n_layers))
    return SeveredPaths(
        token=3,
        peak_layer=4,
        peak_ie=0.3,
        shares={"mlp": 0.625, "attn": 0.125},
        curves={"hidden": hidden, "mlp": tuple(v * 0.375 for v in hidden), "attn": tuple(v * 0.875 for v in hidden)},
        token_text="seum",
        p_corrupt=0.05,
    )


def fact_from(trace: Trace, outcomes: list[AuditOutcome], tags: list[str] | None = None) -> FactResult:
    return FactResult(
        id=trace.fact_id or "?",
        subject=trace.subject,
        relation=trace.relation,
        target=trace.target,
        tags=tags or [],
        trace=trace,
        outcomes=outcomes,
    )


def make_results(extra_facts: list[FactResult] | None = None) -> RunResults:
    """Two fact sets. 'landmarks': passed, failed, xfailed, an unknown fact (skipped) and a
    fact whose trace failed (error), plus a passed and a failed aggregate audit; 'materials':
    one passed fact and no aggregate audit. See N_FACTS, N_TRACED, SUMMARY_ROWS."""
    c, s, e = colosseum(), space_needle(), eiffel()
    landmarks = [
        fact_from(c, [audit("colosseum", "mlp-peak", "passed"), audit("colosseum", "known", "passed")], ["europe"]),
        fact_from(s, [audit("space-needle", "mlp-peak", "failed", "mlp peak at L5 ' Need' (0.351), expected the last subject token 'le'")]),
        fact_from(e, [audit("eiffel", "hidden-last-subject", "xfailed", "peaks at a middle subject token")]),
        FactResult(
            id="unknown-fact",
            subject="Zorblax",
            relation="{} was born in",
            target=" Quux",
            status="unknown",
            status_reason="top-1 is ' the', not ' Quux' (p=0.002)",
            outcomes=[audit("unknown-fact", "mlp-peak", "skipped", "the model does not know this fact")],
        ),
        FactResult(
            id="broken-fact",
            subject="Nowhere",
            relation="{} is in",
            target=" Void",
            status="error",
            status_reason="TraceError: NaN in the corrupted run",
            outcomes=[audit("broken-fact", "mlp-peak", "error", "TraceError: NaN in the corrupted run")],
        ),
    ]
    landmarks += extra_facts or []
    traces = [f.trace for f in landmarks if f.trace is not None]
    sets = [
        FactSetResult(
            name="landmarks",
            path="facts/landmarks.yaml",
            description="Where famous landmarks are",
            facts=landmarks,
            aggregate=aggregate(traces),
            outcomes=[
                AuditOutcome("tests/test_facts.py::test_ate[landmarks]", "ate>=0.1", "passed", "", 0.1),
                AuditOutcome("tests/test_facts.py::test_early_site[landmarks]", "early-site", "failed", "max mlp AIE at last subject 0.30 at L5, expected >= L10", 0.1),
            ],
        ),
    ]
    m = colosseum("colosseum-material")
    sets.append(
        FactSetResult(
            name="materials",
            path="facts/materials.yaml",
            facts=[fact_from(m, [audit("colosseum-material", "known", "passed")])],
            aggregate=aggregate([m]),
            outcomes=[],
        )
    )
    return RunResults(
        model=asdict(MODEL),
        settings={"samples": 10, "window": 10, "kinds": list(KINDS), "metric": "prob", "seed": 0, "noise": "3x subject-embedding std"},
        versions={"fact_locator": "0.1.0", "torch": "2.13.0", "transformers": "5.0.0", "python": "3.12"},
        started_at="2025-01-01T10:00:00+00:00",
        finished_at="2025-01-01T10:02:03+00:00",
        factsets=sets,
    )


# In make_results(): facts in all, traced facts, and summary-table rows (one per fact, one
# per fact set with aggregate audits: only 'landmarks').
N_FACTS = 6
N_TRACED = 4
SUMMARY_ROWS = N_FACTS + 1


def evil_results() -> RunResults:
    """Subject, relation, target, a token, an audit message, a fact id and the model name
    all carry markup and quotes."""
    trace = make_trace(
        EVIL,
        EVIL,
        "{} " + EVIL,
        " " + EVIL,
        ["<script>", "alert(1)", "</script>", " \"q\"", " 'q'", " &amp;"],
        (0, 3),
        n_layers=6,
    )
    fact = fact_from(trace, [audit("x", EVIL, "failed", EVIL)], tags=[EVIL])
    results = make_results()
    results.factsets.append(
        FactSetResult(
            name=EVIL,
            path=EVIL,
            description=EVIL,
            facts=[fact],
            aggregate=aggregate([trace]),
            outcomes=[AuditOutcome(EVIL, EVIL, "failed", EVIL, 0.0)],
        )
    )
    results.outcomes.append(AuditOutcome(EVIL, EVIL, "error", EVIL, 0.0))
    results.model = {**results.model, "name": EVIL}
    results.settings = {**results.settings, EVIL: EVIL}
    results.versions = {**results.versions, "evil": EVIL}
    return results


def single_fact_results(n_layers: int = 30, n_tokens: int = 12, dense: bool = True, n_facts: int = 1) -> RunResults:
    """`n_facts` facts of `n_layers` x `n_tokens` x 3 kinds, for the size bound."""
    tokens = ["The", " Col", "os", "seum"] + [f" w{i}" for i in range(n_tokens - 4)]
    facts = []
    for i in range(n_facts):
        trace = make_trace(f"fact-{i}", "The Colosseum", "{} is located in the country of", " Italy", tokens, (0, 4), n_layers=n_layers, dense=dense)
        facts.append(fact_from(trace, [audit(f"fact-{i}", "mlp-peak", "passed")]))
    traces = [f.trace for f in facts]
    fs = FactSetResult(name="size", path="facts/size.yaml", facts=facts, aggregate=aggregate(traces) if traces else None)
    return RunResults(
        model=asdict(ModelIdentity(MODEL.name, MODEL.architecture, n_layers, MODEL.fingerprint)),
        settings={"samples": 10, "window": 10},
        versions={"fact_locator": "0.1.0"},
        started_at="2025-01-01T10:00:00+00:00",
        finished_at="2025-01-01T10:00:01+00:00",
        factsets=[fs],
    )


def plugin_settings() -> dict:
    """Run settings as the pytest plugin writes them: option values, where each came from,
    the settings each fact set was traced with (here two that differ in samples), counts."""
    return {
        "model": "smollm2-135m", "samples": 10, "seed": 0, "window": 10, "noise": None, "kinds": "hidden,mlp,attn",
        "corruption": "gaussian", "metric": "prob", "method": "exact", "severed": False, "cache_dir": "/tmp/fl-cache",
        "sources": {"model": "default", "samples": "ini", "seed": "default", "window": "default", "noise": "default",
                    "kinds": "cli", "corruption": "default", "metric": "default", "method": "default",
                    "severed": "default", "cache_dir": "default"},
        "factset_settings": {
            path: {"kinds": ["hidden", "mlp", "attn"], "samples": samples, "noise": None, "noise_scale": 3.0, "window": 10,
                   "seed": 0, "metric": "prob", "model": "smollm2-135m", "unknown": "skip",
                   "sources": {"samples": source, "kinds": "cli"},
                   "noise_std": std, "noise_calibration": f"3 x std of subject-token embeddings (fact set {name!r}) = 3 x {std / 3:.6g}"}
            for path, name, samples, source, std in (("facts/landmarks.yaml", "landmarks", 10, "ini", 0.12),
                                                     ("facts/materials.yaml", "materials", 4, "factset", 0.09))
        },
        "stats": {"traced": 4, "cached": 1, "clean_runs": 0},
    }
