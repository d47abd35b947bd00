"""Causal tracing. `tracer.Tracer` is the public face; each job has its own module:

- what is traced and kept: `prompt` (tokens, subject span), `settings` (`TraceSettings`),
  `trace` (the `Trace` value), `sample_effects` (every noise draw's values), `metrics` (what a
  run measures); `uncertainty` (intervals and peak probabilities over the draws) and
  `extension` (more draws for a trace);
- the runs: `engine` (the one forward, `EngineOptions`), `clean_run`, `corruption` (the
  registry of corruption modes, noise calibration), `corrupted_run`, `restoration`;
- which sites run in which forward: `planning` (sites, windows, forks), `batching` (how many
  per forward, out-of-memory retries), `batch_rows`;
- computing less with the same numbers: `kv_suffix`, `stand_ins`, `kernels`, `module_swaps`,
  `readout`; `nonfinite` fails a trace on NaN or inf;
- `reference`: the plain loop the tracer must equal; `severed`, `attribution` and `sweep`:
  the other methods, on the same clean run; `hooks`: forward hooks that always come off.
"""
