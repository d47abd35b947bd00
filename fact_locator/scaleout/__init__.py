"""Scale-out over Ray: the facts a pytest run needs are traced by a pool of Ray actors and
streamed into the driver's trace cache, so items, reports and results work unchanged.

- `work.py`: the plain data that travels (work units, per-fact outcomes, actor identities);
  imports neither ray nor torch.
- `ray_actors.py`: `TraceWorker`, the actor: loads the model once through a `Locator` and
  traces chunks of one fact set.
- `ray_executor.py`: `RayExecutor`, the driver: starts the actors, checks they hold the same
  weights, and runs units through a `ray.wait` loop (no ActorPool: a developer API).
- `prefetch.py`: plan (clean runs, cache keys, noise), skip what the cache has, trace the rest,
  write each trace to the cache as it arrives.
- `remote_locator.py`: `PrefetchedLocator`, the driver's `Locator` that answers from what the
  actors sent and never loads a model.
"""
