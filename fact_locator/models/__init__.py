"""Model sources, loading and architecture adapters."""
