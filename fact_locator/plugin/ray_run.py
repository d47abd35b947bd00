"""`--fl-executor ray` in the plugin: before the first item runs, every fact the selected items
need is traced by Ray actors into the local trace cache (`fact_locator.scaleout`), and the
session's Locator becomes a `PrefetchedLocator` that answers from what the actors sent
(traces, and under --fl-severed the severed paths), and the results record which actor
traced each fact. The
items, expectations, aggregates, JUnit, `--fl-json` and the HTML report then run unchanged,
and the driver never loads the model. Importing this module imports neither ray nor torch.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from fact_locator.errors import FactLocatorError, FactSetError

if TYPE_CHECKING:
    from fact_locator.plugin.options import ResolvedOptions
    from fact_locator.plugin.session import FactLocatorSession
    from fact_locator.scaleout.prefetch import Selection
    from fact_locator.scaleout.ray_executor import RayProgress

__all__ = ["RayProgressLines", "check_ray_options", "needed_facts", "trace_on_ray", "uses_ray"]

# A progress line at most this often (and at each phase's start and end).
LINE_EVERY_S = 10.0


def uses_ray(options: ResolvedOptions) -> bool:
    return options["executor"] == "ray"


def check_ray_options(config: pytest.Config, options: ResolvedOptions) -> None:
    """At configure time: `--fl-executor ray` with -n, with a device map, or without Ray
    installed is one usage error."""
    if not uses_ray(options):
        return
    from fact_locator.scaleout.ray_executor import RAY_EXTRA_HINT

    workers = config.getoption("numprocesses", None)
    if workers not in (None, 0, "0") or hasattr(config, "workerinput"):
        raise pytest.UsageError("fact-locator: --fl-executor ray traces on Ray actors: drop -n "
                                f"(pytest-xdist, -n {workers}); --fl-ray-workers N sets the number of actors")
    if options["device-map"] is not None:
        raise pytest.UsageError(f"fact-locator: --fl-device-map {options['device-map']}: Ray actors take one GPU "
                                "each and load the whole model there; drop it or run without --fl-executor ray")
    if importlib.util.find_spec("ray") is None:
        raise pytest.UsageError(f"fact-locator: {RAY_EXTRA_HINT}")


def needed_facts(fl: FactLocatorSession, items: Iterable[pytest.Item]) -> list[Selection]:
    """Per fact set, the facts the items trace: their own fact, or every fact for an aggregate."""
    from fact_locator.plugin.collection import CASE_KEY
    from fact_locator.scaleout.prefetch import Selection

    wanted: dict[str, tuple[Any, dict[str, None]]] = {}
    for item in items:
        case = item.stash.get(CASE_KEY, None)
        if case is None or not case.factset_path:
            continue
        try:
            factset = fl.factset(fl.rootpath / case.factset_path)
        except FactSetError:
            continue  # its items report it
        _, ids = wanted.setdefault(str(factset.path), (factset, {}))
        if case.fact_id is None or case.aggregate:
            ids.update(dict.fromkeys(s.id for s in factset.facts))
        else:
            ids[case.fact_id] = None
    return [Selection(fs, tuple(ids), fl.unknown_rule(fs)) for fs, ids in wanted.values()]


def trace_on_ray(fl: FactLocatorSession, items: Iterable[pytest.Item]) -> None:
    """Trace what the items need on Ray actors into the cache; raises pytest.UsageError
    when the cluster, the actors or their models cannot be used."""
    from fact_locator.audit_flow import rounds_open
    from fact_locator.scaleout.prefetch import prefetch
    from fact_locator.scaleout.ray_executor import RayExecutor
    from fact_locator.scaleout.remote_locator import PrefetchedLocator
    from fact_locator.scaleout.work import LocatorConfig

    values, sources = fl.options.values, fl.options.sources
    config = LocatorConfig(model=values["model"], device=values["device"], dtype=values["dtype"],
                           overrides=tuple(fl.options.trace_overrides().items()), method=values["method"],
                           model_from_factset=sources["model"] == "default", max_samples=values["max-samples"])
    executor = RayExecutor(config, address=values["ray-address"], workers=values["ray-workers"],
                           on_progress=RayProgressLines.for_config(fl.config))
    locator = fl.locator
    try:
        executor.start()
        # samples: auto: the actors run the rounds; a cached trace still open goes back to them.
        prefetched = prefetch(executor, needed_facts(fl, items), locator.cache, severed=bool(values["severed"]),
                              open_rounds=lambda fs, fact_id, trace: rounds_open(locator, fs, fs.fact(fact_id), trace))
    except FactLocatorError as exc:
        raise pytest.UsageError(f"fact-locator: {exc}") from None
    finally:
        executor.stop()
    remote = PrefetchedLocator.adopt(locator, prefetched)
    fl.use_locator(remote)
    # The results name the actor (and its device) that traced each fact, as xdist's name the worker.
    fl.builder.fact_stamps.update({(fl.relpath(path), fact_id): stamp
                                   for (path, fact_id), stamp in remote.fact_stamps().items()})


@dataclass
class RayProgressLines:
    """Facts done of the total and actors alive, as plain lines: at each phase's start and
    end, and in between at most every LINE_EVERY_S. Nothing under -q."""

    reporter: Any  # pytest.TerminalReporter
    uncaptured: Any
    last: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_config(cls, config: pytest.Config) -> RayProgressLines | None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0:
            return None
        capture = config.pluginmanager.get_plugin("capturemanager")
        from contextlib import nullcontext

        return cls(reporter, capture.global_and_fixture_disabled if capture is not None else nullcontext)

    def __call__(self, progress: RayProgress) -> None:
        now = time.monotonic()
        edge = progress.done == 0 or progress.done >= progress.total
        if not edge and now - self.last.get(progress.phase, float("-inf")) < LINE_EVERY_S:
            return
        if progress.total == 0 and progress.phase != "plan":
            return  # nothing left to trace: the cache had it all
        self.last[progress.phase] = now
        with self.uncaptured():
            self.reporter.write_line(f"fact-locator: {progress.line}")
            self.reporter.flush()
