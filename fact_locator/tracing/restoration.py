"""Restoration runs: the corrupted run with chosen sites set back to their clean states, a
batch of sites per forward, `samples` rows per site.

A forward runs only what can differ from the corrupted run: on the KV-suffix path the
positions from the restored token on and the layers from the batch's first restored one
(`kv_suffix`), each layer for the sites that have reached it, and each MLP at the
(row, position) pairs whose output can matter (`partial_module`)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fact_locator.models.adapters import config_size
from fact_locator.tracing.batch_rows import BatchRows, device_tensor, on_device
from fact_locator.tracing.corrupted_run import FactRun, noise_adder
from fact_locator.tracing.hooks import edit_outputs
from fact_locator.tracing.kv_suffix import replays, staggered_layers, suffix_cache
from fact_locator.tracing.module_swaps import replaced_layers, replaced_submodules
from fact_locator.tracing.nonfinite import FiniteCheck, raise_unless_finite
from fact_locator.tracing.planning import Site, SitePlan
from fact_locator.tracing.readout import Readout, finite_rows
from fact_locator.tracing.stand_ins import partial_module

if TYPE_CHECKING:
    import torch

    from fact_locator.tracing.engine import Engine

__all__ = ["Restorations"]


class Restorations:
    """The restoration forwards of one tracer. Their logits and softmax go into `readout`'s
    buffers, kept from batch to batch of a trace."""

    def __init__(self, engine: Engine, readout: Readout) -> None:
        self.engine = engine
        self.readout = readout
        model = engine.loaded.model
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self._head_path = next((name for name, module in model.named_modules() if module is head), None) if head is not None else None

    def restore(self, runs: Sequence[FactRun], offset: int, sites: Sequence[Site], plan: SitePlan,
                finite: list[FiniteCheck] | None = None) -> torch.Tensor:
        """Corrupted runs with restorations, `samples` rows per site, over prompt positions
        `offset`.. only. The sites' facts have one shape (`FactRun.shape`). With offset > 0
        (KV-suffix path) every site restores token `offset` and the caches supply positions
        < offset. Returns the metric's values (the target's probabilities by default),
        (sites, samples), in the order of `sites`; they run sorted by the first layer each
        computes (`SitePlan.first_layers`). The logits are checked for NaN/inf at once, or
        later by the caller through `finite` (so the host need not wait for the GPU after
        each batch)."""
        forks = plan.forks(sites)
        firsts = plan.first_layers(sites, forks)
        order = sorted(range(len(sites)), key=firsts.__getitem__)
        moved = {old: new for new, old in enumerate(order)}
        values = self._restore_sorted(runs, offset, [sites[i] for i in order], [firsts[i] for i in order],
                                      {moved[i]: moved[donor] for i, donor in forks.items()}, plan, finite)
        if order == list(range(len(sites))):
            return values
        return values.index_select(0, device_tensor([moved[i] for i in range(len(sites))], values.device))

    def free_memory(self) -> None:
        """Before a batch is retried at half the size after running out of memory."""
        import torch

        self.readout.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _restore_sorted(self, runs: Sequence[FactRun], offset: int, sites: Sequence[Site], firsts: Sequence[int],
                        forks: dict[int, int], plan: SitePlan, finite: list[FiniteCheck] | None) -> torch.Tensor:
        """`restore` of sites sorted by their first computed layer `firsts` (row = site *
        samples + sample); `forks` maps a site that starts from another's state to it."""
        import torch

        engine = self.engine
        loaded = engine.loaded
        adapter = loaded.adapter
        base = runs[sites[0].fact].prepared
        samples = runs[sites[0].fact].draws.shape[0]
        n_tokens = len(base.token_ids)
        positions = n_tokens - offset
        first = firsts[0]
        rows = BatchRows([s.fact for s in sites], samples, loaded.device)
        fact_runs = [runs[f] for f in rows.facts]

        edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        if first == 0:
            edits[adapter.embed] = noise_adder(rows.gather([r.draws for r in fact_runs]), base.subject_range, n_tokens, offset)
        # Which sites restore each (kind, layer): one pass over the sites, not one per module.
        restored_at: dict[tuple[str, int], list[int]] = {}
        for i, s in enumerate(sites):
            for layer in () if i in forks else plan.window_of(s):
                restored_at.setdefault((s.kind, layer), []).append(i)
        for (kind, layer), restored in restored_at.items():
            clean = torch.stack([r.states[(kind, layer)] for r in fact_runs])  # (facts, tokens, d)
            at = device_tensor([[rows.local[sites[i].fact], sites[i].token] for i in restored], clean.device)
            edits[adapter.site_path(kind, layer)] = _restorer(restored, at[:, 1] - offset, clean[at[:, 0], at[:, 1]], samples, positions)
        stand_in_layers = replays(rows, fact_runs, first, offset)
        options = engine.options
        cache = None
        if plan.suffix:
            cache = suffix_cache([r.corrupted.keys_values for r in fact_runs], rows, offset, first, options.prefilled_cache)
        prompt_ids = device_tensor([r.prepared.token_ids[offset:] for r in fact_runs], loaded.device)
        input_ids = prompt_ids.index_select(0, rows.row_fact)
        layers = loaded.model.get_submodule(adapter.layers)
        stand_ins = self._partial_mlps(sites, firsts, forks, restored_at, rows, fact_runs, offset, plan)
        # Without buffers kept from batch to batch, each batch gets new ones.
        readout = self.readout if options.buffered_readout else Readout()
        head = readout.head(loaded.model.get_submodule(self._head_path)) if self._head_path is not None else None
        if head is not None:
            stand_ins[self._head_path] = head  # logits into the readout's buffer
        # The MLPs' stand-ins go in first: a staggered layer takes its children as they are
        # then. The layers before the hooks, so that hooks land on the stand-ins.
        with replaced_submodules(loaded.model, stand_ins):
            stand_in_layers |= staggered_layers(layers, rows, fact_runs, cache, firsts, forks, offset)
            with replaced_layers(layers, stand_in_layers), edit_outputs(loaded.model, edits):
                logits = engine.forward(input_ids, cache, positions=base.read_positions)
        where = f"a restoration run ({', '.join(dict.fromkeys(s.kind for s in sites))})"
        ok = finite_rows(logits)
        for local, run in enumerate(fact_runs):
            fact_rows = rows.fact_rows(local)
            check = FiniteCheck((ok if fact_rows is None else ok.index_select(0, fact_rows)).all(), where, run.prepared)
            if finite is None:
                raise_unless_finite(engine, [check])
            else:
                finite.append(check)
        metric = engine.settings.metric
        # One target token per read position: the first, or every one when teacher-forced.
        read = [r.prepared.target_ids if r.prepared.continuation else r.prepared.target_id for r in fact_runs]
        targets = device_tensor(read, logits.device).index_select(0, rows.row_fact)
        distractors = None
        if metric == "logit_diff":
            distractors = device_tensor([r.prepared.distractor_id for r in fact_runs], logits.device).index_select(0, rows.row_fact)
        return readout.values(metric, logits, targets, distractors).view(len(sites), samples)

    def _partial_mlps(self, sites: Sequence[Site], firsts: Sequence[int], forks: dict[int, int], restored_at: dict[tuple[str, int], list[int]],
                      rows: BatchRows, fact_runs: Sequence[FactRun], offset: int, plan: SitePlan) -> dict[str, Any]:
        """Stand-ins (`partial_module`) for the MLPs of the layers a restoration forward runs,
        by module path, that compute only the (row, position) pairs whose output can matter.
        Not needed: positions but the read ones in the last layer (the logits read the last
        one, or one per target token when teacher-forced);
        the restored position of an MLP that a site restores (its clean state replaces it).
        Copied from the corrupted run (KV-suffix path): an mlp or attn site's positions after
        its restored token in its first restored layer, whose MLP input is the corrupted
        run's there (the layers before it are, and an attention restoration at the token
        changes no other position of its own layer)."""
        import torch

        loaded = self.engine.loaded
        adapter = loaded.adapter
        n_layers, samples = loaded.n_layers, rows.samples
        positions = len(fact_runs[0].prepared.token_ids) - offset
        read = fact_runs[0].prepared.read_positions
        device = loaded.device
        width = config_size(loaded.model.config, "width")
        stand_ins: dict[str, Any] = {}
        if not width or not self.engine.options.partial_mlps:
            return stand_ins
        for layer in range(firsts[0], n_layers):
            started = bisect_right(firsts, layer)  # sites that run this layer: the leading ones
            need = torch.ones(started, samples, positions, dtype=torch.bool)
            if layer == n_layers - 1:
                need[:, :, :-read] = False
            for i in restored_at.get(("mlp", layer), ()):
                need[i, :, sites[i].token - offset] = False
            copied = [i for i in range(started) if firsts[i] == layer and sites[i].kind != "hidden" and i not in forks] \
                if plan.suffix and positions > 1 else []
            for i in copied:
                need[i, :, 1:] = False
            if bool(need.all()):
                continue
            fill = None
            if copied:
                batch_rows = (torch.tensor(copied)[:, None] * samples + torch.arange(samples)[None, :]).reshape(-1)
                pairs = (batch_rows[:, None] * positions + torch.arange(1, positions)[None, :]).reshape(-1)
                fill = _mlp_copier(rows, fact_runs, layer, offset, device_tensor(batch_rows, device), device_tensor(pairs, device))
            path = adapter.site_path("mlp", layer)
            compute = device_tensor(need.reshape(-1).nonzero().squeeze(1), device)
            stand_ins[path] = partial_module(loaded.model.get_submodule(path), started * samples, positions, width, compute, fill)
        return stand_ins


def _mlp_copier(rows: BatchRows, fact_runs: Sequence[FactRun], layer: int, offset: int, batch_rows: torch.Tensor,
                pairs: torch.Tensor) -> Callable[[torch.Tensor], None]:
    """Write the corrupted run's MLP output of `layer` at positions offset + 1.. of
    `batch_rows` into the flat (row * positions + position) entries `pairs` of `out`."""
    def fill(out: torch.Tensor) -> None:
        values = rows.gather([r.corrupted.mlp_outputs[layer][:, offset + 1 :] for r in fact_runs], batch_rows=batch_rows)
        out.index_copy_(0, on_device(pairs, out.device), values.reshape(-1, out.shape[-1]).to(out.device, out.dtype))

    return fill


def _restorer(sites: list[int], tokens: torch.Tensor, states: torch.Tensor, samples: int, positions: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Set the rows of each listed site back to its clean state: `tokens` are the sites'
    restored positions within the module output (which covers `positions` positions),
    `states` their clean values (sites, d)."""
    import torch

    device = states.device
    site_index = device_tensor(sites, device)
    row_index = (site_index[:, None] * samples + torch.arange(samples, device=device)[None, :]).reshape(-1)
    token_index = tokens.repeat_interleave(samples)
    values = states.repeat_interleave(samples, dim=0)

    def edit(t: torch.Tensor) -> torch.Tensor:
        view = t.view(-1, positions, t.shape[-1])
        view[row_index, token_index] = values.to(view.dtype)
        return t

    return edit
