"""The KV-suffix path of restoration runs.

A restoration run at token `t` only differs from the corrupted run at positions >= t, and
(for a site whose first restored layer is `f`) only from layer `f` on. So a batch of sites
that share `t` runs just the suffix positions t..T-1, reads the corrupted run's keys and
values for positions < t from a KV cache (`suffix_cache`), and replaces the decoder layers
before the batch's first restored layer by replay layers that hand back the corrupted run's
output (`replays`); layers that only some of the batch's sites have reached run those rows
only (`staggered_layers`). Everything here is architecture-generic; whether a model supports
it is decided once per tracer, by a probe (`suffix_probe`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fact_locator.tracing.batch_rows import BatchRows, device_tensor
from fact_locator.tracing.corrupted_run import FactRun, corrupted_run
from fact_locator.tracing.planning import Site, SitePlan
from fact_locator.tracing.prompt import PreparedPrompt
from fact_locator.tracing.stand_ins import prefilled_layer, replay_layer, staggered_layer

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.engine import Engine
    from fact_locator.tracing.restoration import Restorations

__all__ = ["replays", "staggered_layers", "suffix_cache", "suffix_probe"]


def suffix_cache(keys_values: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]], rows: BatchRows, token: int, first_real: int,
                 prefilled: bool = True) -> Any:
    """A DynamicCache holding the corrupted runs' keys/values for positions < `token`: one
    entry of `keys_values` (a fact's cache of the whole prompt, per layer) per fact of
    `rows`, gathered into the batch's rows once, with room for the positions the batch
    runs (`prefilled_layer`; without `prefilled`, every layer copies as transformers' own
    does). Layers before `first_real` never run (they are replayed), so they keep views of
    the first fact's tensors: the cache only needs them to report its length. None when
    there is no prefix."""
    from transformers import DynamicCache

    if token == 0:
        return None
    layers = []
    for i, (k, v) in enumerate(keys_values[0]):
        if i >= first_real:
            k = rows.gather([kv[i][0] for kv in keys_values])
            v = rows.gather([kv[i][1] for kv in keys_values])
        layers.append(prefilled_layer(k, v, token, writable=prefilled and i >= first_real))
    cache = DynamicCache()
    cache.layers = layers
    return cache


def replays(rows: BatchRows, fact_runs: Sequence[FactRun], first: int, offset: int) -> dict[int, Any]:
    """Stand-ins for layers 0..first-1, all returning layer first-1's corrupted output at
    positions offset.. for each row's fact (what the first computed layer reads; earlier
    ones are ignored)."""
    if first == 0:
        return {}
    main = rows.gather([r.corrupted.outputs[first - 1][:, offset:] for r in fact_runs])
    rest = fact_runs[0].corrupted.output_rest[first - 1]
    output = main if rest is None else (main, *rest)
    # One stand-in per layer: a hook on one replayed layer must not fire for the others.
    return {layer: replay_layer(output) for layer in range(first)}


def staggered_layers(layers: Any, rows: BatchRows, fact_runs: Sequence[FactRun], cache: Any, firsts: Sequence[int],
                     forks: dict[int, int], offset: int) -> dict[int, Any]:
    """Stand-ins for the layers between the batch's first and last site's first computed
    layer: each runs only the rows of the sites that have started (sites are sorted by
    first layer, so these are the leading rows) and hands back the corrupted run's output
    for the rest, but for the forks that start at the next layer: their donor's output
    (`SitePlan.forks`)."""
    samples = rows.samples
    stand_ins = {}
    for index in range(firsts[0], firsts[-1]):
        started = bisect_right(firsts, index)

        def idle(out: torch.Tensor, index: int = index, started: int = started) -> Any:
            return rows.gather([r.corrupted.outputs[index][:, offset:] for r in fact_runs], start_site=started, out=out)

        starting = [(site, donor) for site, donor in forks.items() if firsts[site] == index + 1]
        copies = None
        if starting:
            targets = [site * samples + sample for site, _ in starting for sample in range(samples)]
            sources = [donor * samples + sample for _, donor in starting for sample in range(samples)]
            copies = (device_tensor(targets, rows.device), device_tensor(sources, rows.device))
        stand_ins[index] = staggered_layer(layers[index], len(firsts) * samples, started * samples, idle, cache, index, copies)
    return stand_ins


def suffix_probe(engine: Engine, restorations: Restorations, prepared: PreparedPrompt, plan: SitePlan) -> str | None:
    """Whether this model gives the same result on the KV-suffix path as on the whole
    prompt: None if so, else why not. One noiseless run of the prompt, then its second half
    through the suffix machinery (two sites: layer 0 replayed, layer 1 staggered, the cache
    for the first half). A model that ignores or mangles the cache, or whose layers cannot
    be replayed or run on part of the batch, fails it and every trace then runs whole
    prompts. The one place this is decided."""
    import torch

    loaded = engine.loaded
    ids = (list(prepared.token_ids) * 2)[: max(2, len(prepared.token_ids))]
    # Noise 0 on token 0: the "corrupted" run is the clean one.
    probe = replace(prepared, token_ids=tuple(ids), subject_range=(0, 1))
    width = loaded.model.get_submodule(loaded.adapter.embed).weight.shape[-1]
    zero = torch.zeros((1, 1, width), device=loaded.device, dtype=engine.dtype)
    try:
        base = corrupted_run(engine, probe, zero, keep=True)
        offset = len(ids) // 2
        # Two sites restoring layers 0 and 1: layer 1 then runs for the first site's rows
        # only (a staggered start), layer 0 is replayed.
        second = min(1, loaded.n_layers - 1)
        states = {("hidden", layer): base.outputs[layer][0] for layer in {0, second}}
        run = FactRun(probe, states, zero, base)
        sites = [Site(0, "hidden", 0, offset), Site(0, "hidden", second, offset)]
        probs = restorations.restore([run], offset, sites, replace(plan, suffix=True))
        tolerance = 1e-4 if engine.dtype == torch.float32 else 2e-2
        error = float((probs - base.value).abs().max().item()) / max(1.0, abs(base.value))
        if error > tolerance:
            return f"KV-suffix probe differs from the whole prompt by {error:.3g}"
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: use the plain path
        return f"KV-suffix probe failed: {type(exc).__name__}: {exc}"
