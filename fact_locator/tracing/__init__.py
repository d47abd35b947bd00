"""Causal tracing: prompts, noise, hooks, the tracer and the Trace value."""
