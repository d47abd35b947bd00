"""`FactLocatorSession`: the plugin's state for one pytest run, kept under a StashKey.

It resolves the options and paths, owns the session's `Locator` (built lazily: nothing heavy
happens unless a fact-locator item runs), loads fact sets and the baseline once, and hands
every trace and outcome to a `ResultsBuilder` (`fact_locator.results`), which builds the
`RunResults` that `--fl-json` / `--fl-html` write (`run_output.py`) and the terminal summary
draws. Under pytest-xdist each worker publishes its results as JSON in
`config.workeroutput`; the controller merges them (`merge_worker_payload`, `merge_results`).
"""

from __future__ import annotations

import glob
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fact_locator.errors import FactLocatorError, FactSetError, ModelLoadError
from fact_locator.plugin.item_outcome import fold_report
from fact_locator.plugin.options import ResolvedOptions
from fact_locator.plugin.run_output import header_lines, summary_lines, write_outputs
from fact_locator.results.builder import ResultsBuilder
from fact_locator.versions import run_versions as _versions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fact_locator.aggregate import Aggregate
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.locator import CleanCheck, Locator
    from fact_locator.results import FactResult, FactSetResult, RunResults
    from fact_locator.tracing.trace import SeveredPaths, Trace

__all__ = ["DIST_KEY", "SESSION_KEY", "WORKER_OUTPUT_KEY", "Case", "FactLocatorSession", "get_session"]

WORKER_OUTPUT_KEY = "fact_locator_results"
YAML_SUFFIXES = (".yaml", ".yml")
# In an xdist worker's input: the controller's --dist mode (workers see "no").
DIST_KEY = "fact_locator_dist"


@dataclass(frozen=True)
class Case:
    """What a pytest item audits: a fact set (by path), a fact (None: the set as a whole)
    and the expectation or test name."""

    factset_path: str
    fact_id: str | None
    expectation: str
    aggregate: bool = False


class FactLocatorSession:
    def __init__(self, config: pytest.Config, options: ResolvedOptions):
        self.config = config
        self.options = options
        self.rootpath = Path(config.rootpath)
        self.started_at = _now()
        self.finished_at: str | None = None
        self._locator: Locator | None = None
        self._load_error: FactLocatorError | None = None
        self._factsets: dict[Path, FactSet | FactSetError] = {}
        self.builder = ResultsBuilder()
        self._merged: list[RunResults] = []
        self._lock = threading.RLock()
        self.results: RunResults | None = None
        self.aggregates: dict[str, Aggregate] = {}
        self.broken_factsets: set[str] = set()  # node ids of fact-set files that failed to load
        self._glob_files: set[Path] | None = None
        self.is_worker = hasattr(config, "workerinput")
        self.baseline: RunResults | None = None
        self.written: list[str] = []  # what write_outputs wrote, for the summary
        self.severed_done: set[tuple[str, str]] = set()
        # (fact-set path, fact id) of the facts whose samples: auto rounds have run (plugin/fact_audit.py).
        self.rounds_done: set[tuple[str, str]] = set()
        # Relative fact-set path -> ids of the facts this session's items trace (set after collection).
        self.selected_facts: dict[str, set[str]] = {}
        # Whether all items of a fact set run in this process (decided after collection).
        self.sets_stay_together = not self.is_worker
        # This xdist worker's own GPU (its CUDA_VISIBLE_DEVICES entry), where it was given one.
        self.gpu: str | None = None

    def note_collected(self, items: Sequence[pytest.Item], selected: dict[str, set[str]]) -> None:
        """After collection: the facts this session's items trace, and (in an xdist worker)
        whether every item of a fact set comes to this worker. `--dist loadfile` sends each
        YAML file to one worker. `--dist loadgroup` does so through the items' xdist_group
        marks only where xdist could add the group to the node ids: pytest 9.2 with
        pytest-xdist 3.8 cannot (pytest-xdist#1386), and the sets are then spread."""
        self.selected_facts = selected
        if not self.is_worker:
            return
        dist = getattr(self.config, "workerinput", {}).get(DIST_KEY, "no")
        grouped = [item.nodeid for item in items if item.get_closest_marker("xdist_group") is not None]
        self.sets_stay_together = dist == "loadfile" or (
            dist == "loadgroup" and bool(grouped) and all("@factset-" in nodeid for nodeid in grouped))

    # -- baseline --------------------------------------------------------------------------------
    def load_baseline(self) -> None:
        """--fl-baseline: read the earlier run's results now; a bad file is one usage error."""
        from fact_locator.compare import load_comparable
        from fact_locator.errors import ResultsError

        if self.options["baseline"] is None:
            return
        path = self.output_path("baseline")
        assert path is not None
        try:
            self.baseline = load_comparable(path)
        except (ResultsError, OSError, ValueError) as exc:
            raise pytest.UsageError(f"fact-locator: --fl-baseline {self.options['baseline']}: {exc}") from None

    def baseline_rule(self) -> Any:
        from fact_locator.compare import DEFAULT_LEVEL, BaselineRule

        v = self.options.values
        # The run's confidence level where the settings have one, else the rule's default.
        level = v.get("confidence")
        level = float(level) if isinstance(level, (int, float)) and not isinstance(level, bool) else DEFAULT_LEVEL
        return BaselineRule(max_layer_shift=int(v["baseline-max-layer-shift"]),
                            max_ate_drop=float(v["baseline-max-ate-drop"]), max_te_drop=float(v["baseline-max-te-drop"]),
                            level=level, allow_noise_change=bool(v["baseline-allow-noise-change"]))

    def baseline_factset(self, factset: FactSet) -> FactSetResult | None:
        """The baseline's fact set of the same name (or, failing that, the same path)."""
        if self.baseline is None:
            return None
        by_name = [fs for fs in self.baseline.factsets if fs.name == factset.name]
        if by_name:
            return by_name[0]
        path = self.relpath(factset.path)
        return next((fs for fs in self.baseline.factsets if fs.path == path), None)

    def baseline_fact(self, factset: FactSet, fact_id: str) -> FactResult | None:
        fs = self.baseline_factset(factset)
        if fs is None:
            return None
        return next((f for f in fs.facts if f.id == fact_id and f.trace is not None), None)

    # -- paths ---------------------------------------------------------------------------------
    def relpath(self, path: Path | str) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.rootpath.resolve()).as_posix()
        except ValueError:
            return str(path)

    def resolve_path(self, value: str) -> Path:
        """An ini/marker path: relative to the rootdir. A command-line path: relative to the
        invocation directory (pytest's convention)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.rootpath / path

    def output_path(self, name: str) -> Path | None:
        value = self.options[name]
        if value is None:
            return None
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        base = Path(self.config.invocation_params.dir) if self.options.sources[name] == "cli" else self.rootpath
        return base / path

    def factset_globs(self) -> list[str]:
        return [g for g in str(self.options["factsets"]).split(",") if g]

    def factset_glob_base(self) -> Path:
        """Where relative --fl-factsets globs start. Given on the command line: the invocation
        folder, like every path argument. From the ini file or the default: the ini file's
        folder, else the invocation folder. Never the rootdir, which pytest moves to the common
        ancestor of path-like arguments when no ini file pins it."""
        invocation = Path(self.config.invocation_params.dir)
        if self.options.sources["factsets"] == "cli":
            return invocation
        inipath = self.config.inipath
        return inipath.parent if inipath is not None else invocation

    def is_factset_file(self, file_path: Path, named: bool) -> bool:
        """A YAML file is a fact set when it is named on the command line (`named`: pytest's
        `session.isinitpath`), or when one of the fact-set globs matches it."""
        if file_path.suffix not in YAML_SUFFIXES:
            return False
        if named:
            return True
        if self._glob_files is None:
            self._glob_files = set(self.factset_files())
        return file_path.resolve() in self._glob_files

    def factset_files(self) -> list[Path]:
        """Every file the globs match (sorted, deduplicated)."""
        base = self.factset_glob_base()
        found: dict[Path, None] = {}
        for pattern in self.factset_globs():
            pattern_path = Path(pattern).expanduser()
            full = pattern_path if pattern_path.is_absolute() else base / pattern_path
            for name in sorted(glob.glob(str(full), recursive=True)):
                m = Path(name)
                if m.is_file() and m.suffix in YAML_SUFFIXES:
                    found[m.resolve()] = None
        return list(found)

    # -- fact sets ------------------------------------------------------------------------------
    def factset(self, path: Path | str) -> FactSet:
        """The parsed fact set (cached); raises FactSetError with 'path:line: message'."""
        from fact_locator.factset import load_factset

        path = Path(path)
        key = path.resolve()
        with self._lock:
            if key not in self._factsets:
                try:
                    self._factsets[key] = load_factset(key)
                except FactSetError as exc:
                    # Messages name the file as the user sees it: relative to the rootdir.
                    self._factsets[key] = FactSetError(exc.message, self.relpath(key), exc.line)
            value = self._factsets[key]
        if isinstance(value, FactSetError):
            raise value
        return value

    def unknown_rule(self, factset: FactSet) -> str:
        if self.options.sources["unknown"] in ("cli", "ini"):
            return str(self.options["unknown"])
        return factset.unknown

    # -- the locator ----------------------------------------------------------------------------
    @property
    def locator(self) -> Locator:
        """The session's Locator; ModelLoadError etc. are raised (and remembered) here."""
        from fact_locator.locator import Locator
        from fact_locator.models.loading import DeviceMap
        from fact_locator.plugin.progress import progress_listener

        with self._lock:
            if self._load_error is not None:
                raise self._load_error
            if self._locator is None:
                values = self.options.values
                cache_dir = self.output_path("cache-dir") if values["cache-dir"] is not None else None
                self._locator = Locator(
                    model=values["model"],
                    device=values["device"],
                    dtype=values["dtype"],
                    overrides={**self.options.trace_overrides(),
                               **({"known_rule": values["known-rule"]} if values["known-rule"] is not None else {})},
                    defaults={},
                    cache_dir=cache_dir,
                    use_cache=not values["no-cache"],
                    model_from_factset=self.options.sources["model"] == "default",
                    method=values["method"],
                    max_samples=values["max-samples"],
                    on_progress=progress_listener(self.config),
                    on_trace=lambda fact, trace, cached: self.config.hook.pytest_fl_trace(
                        config=self.config, fact=fact, trace=trace, cached=cached),
                    device_map=DeviceMap.from_options(values["device-map"], values["max-memory"],
                                                      values["offload-folder"]),
                )
            return self._locator

    def load_model(self, spec: str | None = None) -> None:
        """Load the session's model now; a failure becomes one usage-error line."""
        try:
            self.locator.load(spec)
        except FactLocatorError as exc:
            with self._lock:
                self._load_error = exc
            raise

    def use_locator(self, locator: Locator) -> None:
        """Answer from `locator` from now on (`--fl-executor ray`: one fed by the Ray actors)."""
        with self._lock:
            self._locator = locator

    def usage_error(self, exc: FactLocatorError) -> pytest.UsageError:
        source = self.options.sources["model"]
        where = {"cli": "--fl-model", "ini": "ini fl_model", "default": "the default model"}.get(source, "--fl-model")
        if isinstance(exc, ModelLoadError):
            return pytest.UsageError(f"fact-locator: {where} {self.options['model']!r}: {exc}")
        return pytest.UsageError(f"fact-locator: {exc}")

    # -- recording ------------------------------------------------------------------------------
    def record_settings(self, factset: FactSet) -> None:
        """The settings a fact set is traced with, and where each value came from."""
        rec = self.builder.factset(self.relpath(factset.path), factset)
        if rec.settings:
            return
        locator = self.locator
        settings = locator.settings_for(factset).to_dict()
        sources = {}
        for name in ("samples", "seed", "window", "kinds", "noise", "corruption", "metric"):
            if self.options.sources[name] in ("cli", "ini"):
                sources[name] = self.options.sources[name]
            elif name in factset.settings:
                sources[name] = "factset"
            else:
                sources[name] = "default"
        noise = locator.noise_for(factset)
        if self.options.sources["model"] == "default" and "model" in factset.settings:
            sources["model"] = "factset"
        rec.settings = {**settings, "method": locator.method, "model": locator.model_for(factset), "unknown": self.unknown_rule(factset),
                        "min_p_clean": factset.min_p_clean, "sources": sources,
                        "noise_std": noise.std if noise is not None else None,
                        "noise_calibration": noise.calibration if noise is not None else "per fact",
                        # settings' noise_calibration is the text above: the choice travels as noise_source
                        "noise_source": noise.source if noise is not None else "fact",
                        "known_rule": locator.known_rule_for(factset)}

    def record_fact(self, factset: FactSet, spec: FactSpec, *, trace: Trace | None = None,
                    clean: CleanCheck | None = None, status: str | None = None, reason: str = "") -> None:
        self.builder.record_fact(self.relpath(factset.path), factset, spec, trace=trace, clean=clean, status=status,
                                 reason=reason)

    def record_severed(self, factset: FactSet, spec: FactSpec, severed: SeveredPaths) -> None:
        self.builder.record_severed(self.relpath(factset.path), factset, spec, severed)

    def record_aggregate(self, factset: FactSet, agg: Aggregate) -> None:
        self.builder.record_aggregate(self.relpath(factset.path), factset, agg)

    def record_report(self, item: pytest.Item, case: Case, report: pytest.TestReport) -> None:
        """Fold the setup/call/teardown reports of one item into one AuditOutcome."""
        rec = self.builder.outcome(item.nodeid, case.factset_path, case.fact_id, case.expectation)
        with self._lock:
            fold_report(rec, report, item.stash.get(MESSAGE_KEY, ""))

    # -- results ---------------------------------------------------------------------------------
    def build_results(self) -> RunResults:
        """This process's results, with the xdist workers' merged in."""
        from fact_locator.results import merge_results

        with self._lock:
            own = self.builder.build(model=self.model_dict(), settings=self.settings_dict(), versions=_versions(),
                                     started_at=self.started_at, finished_at=self.finished_at or _now(),
                                     worker=str(getattr(self.config, "workerinput", {}).get("workerid", "")),
                                     device=self.device_label())
            merged = list(self._merged)
        if not merged:
            return own
        return merge_results([own, *merged], ["this process's results", *("an xdist worker's results" for _ in merged)])

    def settings_dict(self) -> dict[str, Any]:
        values = dict(self.options.values)
        data: dict[str, Any] = {k.replace("-", "_"): v for k, v in values.items()}
        data["sources"] = {k.replace("-", "_"): v for k, v in self.options.sources.items()}
        data["factset_settings"] = self.builder.factset_settings()
        if self._locator is not None:
            data["cache_dir"] = str(self._locator.cache.root) if self._locator._cache is not None else data["cache_dir"]
            data["stats"] = dict(self._locator.stats)
        return data

    def model_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data: dict[str, Any] = {"spec": self.options["model"]}
        if self._locator is not None:
            models = self._locator.loaded_models
            if self.options["model"] in models:
                loaded = models[self.options["model"]]
                data.update(asdict(loaded.identity), device=loaded.device)
            others = {spec: {**asdict(m.identity), "device": m.device} for spec, m in models.items()
                      if spec != self.options["model"]}
            if others:
                data["others"] = others
        return data

    def device_label(self) -> str:
        """Where this process traced: the model's device, its GPU as CUDA_VISIBLE_DEVICES names
        it when it was given one, and whether layers were spread by a device map."""
        loaded = self._locator.loaded_models.get(self.options["model"]) if self._locator is not None else None
        if loaded is None:
            return ""
        notes = ([f"GPU {self.gpu}"] if self.gpu is not None else []) + \
            (["device map"] if self.options["device-map"] is not None else [])
        return loaded.device + (f" ({', '.join(notes)})" if notes else "")

    # -- xdist -----------------------------------------------------------------------------------
    def worker_payload(self) -> str:
        return json.dumps(self.build_results().to_dict(), ensure_ascii=False)

    def merge_worker_payload(self, payload: str) -> None:
        from fact_locator.results import RunResults

        other = RunResults.from_dict(json.loads(payload), source="an xdist worker's results")
        with self._lock:
            self._merged.append(other)

    def header_lines(self) -> list[str]:
        return header_lines(self.options)

    def finish(self) -> None:
        self.finished_at = _now()
        self.results = self.build_results()

    def has_results(self) -> bool:
        return self.results is not None and bool(self.results.factsets or self.results.outcomes)

    def write_outputs(self) -> None:
        assert self.results is not None
        self.written = write_outputs(self.results, self.output_path("json"), self.output_path("html"))

    def summary_lines(self, terminalreporter: Any) -> list[str]:
        assert self.results is not None
        tw = terminalreporter._tw
        return summary_lines(self.results, self.written, color=tw.hasmarkup, width=tw.fullwidth,
                             quiet=self.config.get_verbosity() < 0)


MESSAGE_KEY = pytest.StashKey[str]()
SESSION_KEY = pytest.StashKey[FactLocatorSession]()


def get_session(config: pytest.Config) -> FactLocatorSession:
    return config.stash[SESSION_KEY]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
