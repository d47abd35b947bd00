"""Measure the position-0 control: the audited facts with and without words before the subject.

    .venv/bin/python factsets/position0_control.py              # smollm2-135m, the README's table
    .venv/bin/python factsets/position0_control.py --samples 10 --level 0.9

SmolLM2 adds no BOS token and every audited prompt starts with its subject, so the noise always
lands on position 0, which Llama-family models use as an attention sink. The controls
(`landmarks_prefixed.yaml`, `cities_prefixed.yaml`) are the same facts with "Here is a fact."
before the subject. For every fact known in both versions (ROME's greedy rule) this measures
p_clean, p_corrupt, TE and the IE curves over layers at the last subject token (hidden, mlp,
attn) and at the last token (attn), under the model's noise (`noise_calibration: model`), with
the noise draws and windows of the reference loop (`tracing/reference.py`, which the engine
equals), restoring only those two tokens: a thirtieth of a full trace's sites. Intervals are
percentile bootstraps over facts (`fact_locator.confidence.bootstrap_mean`); an AIE is at the
layer where the facts' mean curve peaks, chosen once (the interval does not cover that choice);
"control - original" bootstraps the per-fact differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAIRS = (("landmarks.yaml", "landmarks_prefixed.yaml"), ("cities.yaml", "cities_prefixed.yaml"))
# (name, kind, token): the curves that can be measured; token "subject" is the last subject token.
CURVES = (("hidden @ last subject", "hidden", "subject"), ("mlp @ last subject", "mlp", "subject"),
          ("attn @ last subject", "attn", "subject"), ("attn @ last token", "attn", "last"))
CURVE_KEYS = {"hidden": CURVES[0], "mlp": CURVES[1], "attn": CURVES[2], "attn-last": CURVES[3]}


@dataclass(frozen=True)
class Measured:
    """One fact's numbers: the clean and corrupted P(o) and an IE curve over layers per CURVES name."""

    fact_id: str
    p_clean: float
    p_corrupt: float
    curves: dict[str, list[float]]

    @property
    def te(self) -> float:
        return self.p_clean - self.p_corrupt


def measure(loaded, fact, samples: int, noise_std: float, window: int, seed: int,
            curves: Sequence[tuple[str, str, str]] = CURVES,
            layers: range | None = None) -> tuple[float, float, dict[str, list[float]]]:
    """p_clean, p_corrupt and the `curves` of one fact, as `reference_trace` computes them at those
    sites; layers outside `layers` (default all) are NaN."""
    import torch

    from fact_locator.tracing.reference import reference_noise, reference_window

    model, adapter, tok = loaded.model, loaded.adapter, loaded.tokenizer
    enc = tok(fact.prompt, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]], device=loaded.device)
    a, b = fact.subject_start, fact.subject_start + len(fact.subject)
    subject = [i for i, (x, y) in enumerate(enc["offset_mapping"]) if y > x and x < b and y > a]
    start, end = subject[0], subject[-1] + 1
    n_tokens, n_layers = ids.shape[1], adapter.num_layers(model)
    target_id = tok(fact.prompt + " " + fact.target)["input_ids"][n_tokens]
    tokens = {"subject": end - 1, "last": n_tokens - 1}

    clean: dict[tuple[str, int], torch.Tensor] = {}
    hooks = []
    for kind in ("hidden", "mlp", "attn"):
        for layer in range(n_layers):
            def record(_m, _i, out, key=(kind, layer)):
                clean[key] = (out[0] if isinstance(out, tuple) else out).detach().clone().reshape(1, n_tokens, -1)
            hooks.append(model.get_submodule(adapter.site_path(kind, layer)).register_forward_hook(record))
    with torch.no_grad():
        p_clean = torch.softmax(model(ids).logits[0, -1].float(), -1)[target_id].item()
    for hook in hooks:
        hook.remove()

    embed = model.get_submodule(adapter.embed)
    noise = reference_noise(samples, end - start, embed.weight.shape[1], noise_std, seed, "gaussian")
    noise = noise.to(device=loaded.device, dtype=embed.weight.dtype)

    def run(kind: str | None, layers: list[int], token: int) -> float:
        def add_noise(_m, _i, out):
            out = out.clone()
            out[:, start:end] += noise
            return out

        handles = [embed.register_forward_hook(add_noise)]
        for layer in layers if kind is not None else []:
            def restore(_m, _i, out, layer=layer):
                h = out[0] if isinstance(out, tuple) else out
                h3 = h.reshape(samples, n_tokens, -1).clone()
                h3[:, token] = clean[(kind, layer)][0, token]
                new = h3.reshape(h.shape)
                return (new, *out[1:]) if isinstance(out, tuple) else new
            handles.append(model.get_submodule(adapter.site_path(kind, layer)).register_forward_hook(restore))
        try:
            with torch.no_grad():
                logits = model(ids.repeat(samples, 1)).logits
            return torch.softmax(logits[:, -1].float(), -1)[:, target_id].mean().item()
        finally:
            for handle in handles:
                handle.remove()

    p_corrupt = run(None, [], 0)
    wanted = layers if layers is not None else range(n_layers)
    measured = {name: [run(kind, reference_window(kind, layer, n_layers, window), tokens[where]) - p_corrupt
                       if layer in wanted else float("nan") for layer in range(n_layers)]
                for name, kind, where in curves}
    return p_clean, p_corrupt, measured


def pct(interval) -> str:
    return f"{interval.estimate:.1%} [{interval.low:.1%}, {interval.high:.1%}]"


def rows(original: Sequence[Measured], control: Sequence[Measured], level: float,
         curves: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str, str]]:
    """(quantity, original, control, control - original) for one group of facts."""
    from fact_locator.confidence import bootstrap_mean

    def row(name: str, value: Callable[[Measured], float]) -> tuple[str, str, str, str]:
        a, b = [value(m) for m in original], [value(m) for m in control]
        return (name, pct(bootstrap_mean(a, level)), pct(bootstrap_mean(b, level)),
                pct(bootstrap_mean([y - x for x, y in zip(a, b)], level)))

    out = [row("p_clean", lambda m: m.p_clean), row("p_corrupt", lambda m: m.p_corrupt), row("ATE", lambda m: m.te),
           row("TE / p_clean", lambda m: m.te / m.p_clean)]
    for name, _kind, _where in curves:
        measured = [l for l, v in enumerate(original[0].curves[name]) if v == v]  # NaN: a layer not measured
        peak_a = max(measured, key=lambda l: sum(m.curves[name][l] for m in original))
        peak_b = max(measured, key=lambda l: sum(m.curves[name][l] for m in control))
        a = bootstrap_mean([m.curves[name][peak_a] for m in original], level)
        b = bootstrap_mean([m.curves[name][peak_b] for m in control], level)
        out.append((f"max AIE {name} (layer {peak_a} / {peak_b})", pct(a), pct(b), "—"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=5, help="noise draws per fact (default 5, as the audits)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--curves", default=",".join(CURVE_KEYS),
                        help=f"IE curves to measure, of {', '.join(CURVE_KEYS)} (default all; '' for none: p and TE only)")
    parser.add_argument("--layers", default="", help="only these layers' sites, FIRST-LAST (default all; the peak is then over them)")
    args = parser.parse_args(argv)
    layers = None
    if args.layers:
        try:
            first, last = (int(x) for x in args.layers.split("-"))
        except ValueError:
            parser.error(f"--layers: expected FIRST-LAST, e.g. 2-6, got {args.layers!r}")
        layers = range(first, last + 1)
    unknown = [key for key in filter(None, args.curves.split(",")) if key not in CURVE_KEYS]
    if unknown:
        parser.error(f"--curves: unknown curve {unknown[0]!r}; choose from {', '.join(CURVE_KEYS)}")
    curves = [CURVE_KEYS[key] for key in filter(None, args.curves.split(","))]

    from fact_locator.factset import load_factset
    from fact_locator.locator import Locator

    locator = Locator(model=args.model, device="cpu")
    loaded = locator.load()
    started = time.perf_counter()
    groups: list[tuple[str, list[Measured], list[Measured]]] = []
    for original_file, control_file in PAIRS:
        pair: list[list[Measured]] = []
        sets = [load_factset(HERE / original_file), load_factset(HERE / control_file)]
        known = [{spec.id for spec in fs.facts if locator.clean(spec.fact, fs).known} for fs in sets]
        both = known[0] & known[1]
        for fs in sets:
            settings = locator.settings_for(fs)
            noise = locator.noise_for(fs)
            done = []
            for spec in fs.facts:
                if spec.id in both:
                    p_clean, p_corrupt, fact_curves = measure(loaded, spec.fact, args.samples, noise.std, settings.window,
                                                              settings.seed, curves, layers)
                    done.append(Measured(spec.id, p_clean, p_corrupt, fact_curves))
                    print(f"  {fs.name}/{spec.id}: p_clean {p_clean:.3f} p_corrupt {p_corrupt:.4f} "
                          f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
            pair.append(done)
        groups.append((f"{sets[0].name} ({len(both)} facts)", pair[0], pair[1]))
    groups.append((f"both ({len(groups[0][1]) + len(groups[1][1])} facts)", groups[0][1] + groups[1][1], groups[0][2] + groups[1][2]))
    print(f"{args.model} position-0 control: samples {args.samples}, noise {noise.std:.4f} ({noise.source}), "
          f"layers {args.layers or 'all'}; "
          f"percentile bootstrap over facts at {args.level:.0%}")
    print("| facts | quantity | subject at position 0 | \"Here is a fact.\" first | control - original |")
    print("| --- | --- | --- | --- | --- |")
    for label, original, control in groups:
        for quantity, a, b, diff in rows(original, control, args.level, curves):
            print(f"| {label} | {quantity} | {a} | {b} | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
