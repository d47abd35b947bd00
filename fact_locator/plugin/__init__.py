"""The fact-locator pytest plugin (entry point `pytest11: fact_locator`): hooks only.

State lives in `session.FactLocatorSession` (under a StashKey), options in `options.py`,
nodes in `collection.py`, fixtures in `fixtures.py`, xdist merging and each worker's GPU in
`xdist.py`, `--fl-shard` in `sharding.py`.
Importing this module never imports torch or transformers: `pytest --help` stays fast.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Any

import pytest

from fact_locator.errors import ExpectationUndecided, FactLocatorError
from fact_locator.expectations.decision import pop_run_level, push_run_level
from fact_locator.plugin import fixtures as _fixtures
from fact_locator.plugin.collection import CASE_KEY, FactSetFile, FactSetFiles, selected_facts
from fact_locator.plugin.options import OptionError, resolve_options
from fact_locator.plugin.ray_run import check_ray_options, trace_on_ray, uses_ray
from fact_locator.plugin.session import SESSION_KEY, YAML_SUFFIXES, FactLocatorSession
from fact_locator.plugin.sharding import ShardFilter
from fact_locator.plugin.undecided import count_undecided, run_level_from
from fact_locator.plugin.xdist import XdistMerge, assign_worker_gpu, is_worker, publish

GROUP = "fact-locator"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from fact_locator.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "fact-locator: causal-tracing audits of where a model stores facts")
    from fact_locator.settings import add_plugin_options, register_ini

    add_plugin_options(group.addoption)
    register_ini(parser.addini)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _fixtures.MARKER_HELP)
    share_cpu_threads(getattr(config, "workerinput", None))
    worker_gpu = assign_worker_gpu(getattr(config, "workerinput", None))  # before CUDA starts here
    try:
        options = resolve_options(config.getoption, config.getini)
    except OptionError as exc:
        raise pytest.UsageError(f"fact-locator: {exc}") from None
    check_ray_options(config, options)
    fl = FactLocatorSession(config, options)
    fl.gpu = worker_gpu.gpu if worker_gpu is not None else None
    fl.load_baseline()
    config.stash[SESSION_KEY] = fl
    push_run_level(run_level_from(options.explicit))  # assert_expectation's default; popped at unconfigure
    config.pluginmanager.register(BrokenFactSets(fl), "fact_locator.broken_factsets")
    if not config.pluginmanager.is_registered(_fixtures):
        config.pluginmanager.register(_fixtures, "fact_locator.fixtures")
    if config.pluginmanager.hasplugin("xdist") and not is_worker(config):
        config.pluginmanager.register(XdistMerge(fl), "fact_locator.xdist")
    if options["shard"] is not None:
        config.pluginmanager.register(ShardFilter(options["shard"]), "fact_locator.shard")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(SESSION_KEY, None) is not None:
        pop_run_level()


def share_cpu_threads(workerinput: dict | None) -> None:
    """Give each xdist worker its share of the cores before torch is imported: two workers
    with a thread per core each oversubscribe the CPU, and OpenMP's spinning threads then make
    every forward many times slower. A user's OMP_NUM_THREADS wins."""
    if workerinput is None:
        return
    workers = int(workerinput.get("workercount", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    fl = config.stash.get(SESSION_KEY, None)
    if fl is None:
        return None
    merge = config.pluginmanager.get_plugin("fact_locator.xdist")
    return fl.header_lines() + (merge.header_lines() if isinstance(merge, XdistMerge) else [])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    fl = parent.config.stash.get(SESSION_KEY, None)
    if fl is not None and fl.is_factset_file(file_path, named=parent.session.isinitpath(file_path)):
        return FactSetFile.from_parent(parent, path=file_path)
    return None


class BrokenFactSets:
    """Remembers the fact-set files that failed to load. A plugin object, because
    `pytest_collectreport` gets no config; under xdist the controller learns of a worker's
    collection errors only through that hook."""

    def __init__(self, fl: FactLocatorSession):
        self.fl = fl

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and Path(report.nodeid.split("::")[0]).suffix in YAML_SUFFIXES:
            self.fl.broken_factsets.add(report.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> list[FactSetFile] | None:
    if not isinstance(obj, FactSetFiles):
        return None
    fl = collector.config.stash[SESSION_KEY]
    return [FactSetFile.from_parent(collector, path=path) for path in obj.files(fl, Path(collector.path))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _fixtures.generate(metafunc)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # A fact set reached twice (its folder and a FactSetFiles) runs once.
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.nodeid in seen and CASE_KEY in item.stash:
            continue
        seen.add(item.nodeid)
        unique.append(item)
        if CASE_KEY not in item.stash:
            case = _fixtures.case_of(item)
            if case is not None:
                item.stash[CASE_KEY] = case
    items[:] = unique


def pytest_collection_finish(session: pytest.Session) -> None:
    """A broken fact-set file fails the run but does not stop the other fact sets; then
    load the model before the first audit runs, so a bad --fl-model is one usage error."""
    config = session.config
    fl = config.stash.get(SESSION_KEY, None)
    if fl is None:
        return
    if (session.testsfailed and fl.broken_factsets and session.testsfailed <= len(fl.broken_factsets)
            and not config.option.continue_on_collection_errors):
        config.option.continue_on_collection_errors = True
    if config.option.collectonly or not any(CASE_KEY in item.stash for item in session.items):
        return
    fl.note_collected(session.items, selected_facts(fl, session.items))
    if uses_ray(fl.options):
        trace_on_ray(fl, session.items)  # the driver loads no model: the actors trace into the cache
        return
    try:
        fl.load_model()
    except FactLocatorError as exc:
        if is_worker(config):
            return  # each item reports the error in one line
        raise fl.usage_error(exc) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    case = item.stash.get(CASE_KEY, None)
    fl = item.config.stash.get(SESSION_KEY, None)
    if case is not None and fl is not None:
        fl.record_report(item, case, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A Python audit whose `assert_expectation` was undecided counts as --fl-undecided says."""
    try:
        return (yield)
    except ExpectationUndecided as exc:
        fl = pyfuncitem.config.stash.get(SESSION_KEY, None)
        if fl is not None:
            count_undecided(pyfuncitem, str(exc), fl.options["undecided"])
        raise


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    fl = config.stash.get(SESSION_KEY, None)
    if fl is None:
        return
    fl.finish()
    if is_worker(config):
        publish(config, fl)
        return
    fl.write_outputs()
    if fl.broken_factsets and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                                                     pytest.ExitCode.NO_TESTS_COLLECTED):
        # Exit 2, pytest's own code for collection errors, even though the other fact sets
        # ran: CI can tell "a fact set is broken" from "an audit failed" (1).
        session.exitstatus = pytest.ExitCode.INTERRUPTED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    fl = config.stash.get(SESSION_KEY, None)
    if fl is None or is_worker(config) or fl.results is None or not fl.has_results():
        return
    terminalreporter.section("fact-locator")
    for line in fl.summary_lines(terminalreporter):
        terminalreporter.write_line(line)

