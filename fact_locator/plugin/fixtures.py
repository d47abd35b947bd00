"""Fixtures for Python audits, and the parametrization behind them.

    @pytest.mark.factset("factsets/geography.yaml")      # relative to the rootdir
    def test_mlp_site(trace):                            # one test per fact (ids = fact ids)
        assert_expectation(peak_at("mlp", "last_subject"), trace)

    @pytest.mark.factset("factsets/geography.yaml")
    def test_ate(aggregate):                             # one test for the whole set
        assert aggregate.ate > 0.1

Fixtures: `locator` (session: the model is loaded once per session and per xdist worker),
`factset` (FactSet), `fact_spec` (FactSpec), `fact` (Fact), `trace` (Trace; unknown facts
are skipped, failed or traced by the set's rule), `aggregate` (Aggregate over the set's
known facts). This module is registered as a plugin by `pytest_configure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fact_locator.errors import FactSetError
from fact_locator.plugin.fact_audit import aggregate_for, trace_fact
from fact_locator.plugin.session import Case, FactLocatorSession, get_session

if TYPE_CHECKING:
    from fact_locator.aggregate import Aggregate
    from fact_locator.facts import Fact
    from fact_locator.factset import FactSet, FactSpec
    from fact_locator.locator import Locator
    from fact_locator.tracing.trace import Trace

__all__ = ["CASE_PARAM", "MARKER", "aggregate", "case_of", "fact", "fact_spec", "factset", "generate", "locator", "trace"]

MARKER = "factset"
CASE_PARAM = "_fl_case"
ERROR_CASE = "!error"
MARKER_HELP = (
    "factset(path): parametrize the test over the facts of a fact-set file (path relative to the rootdir, "
    "or to the test file); gives the fixtures fact, fact_spec, trace, factset and aggregate"
)
_PER_FACT = ("fact", "fact_spec", "trace")


def marker_path(fl: FactLocatorSession, node: pytest.Item | pytest.Collector, marker: pytest.Mark) -> Path:
    if len(marker.args) != 1 or not isinstance(marker.args[0], (str, Path)):
        raise pytest.UsageError(f"{node.nodeid}: write the marker as @pytest.mark.factset(\"factsets/name.yaml\")")
    value = Path(marker.args[0]).expanduser()
    if value.is_absolute():
        return value
    for base in (fl.rootpath, Path(node.path).parent):
        if (base / value).is_file():
            return base / value
    return fl.rootpath / value


def _marked_factset(fl: FactLocatorSession, node: pytest.Item | pytest.Collector) -> FactSet:
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        pytest.fail(f"{node.nodeid}: this fixture needs @pytest.mark.factset(\"factsets/name.yaml\") on the test",
                    pytrace=False)
    error = None
    try:
        return fl.factset(marker_path(fl, node, marker))
    except FactSetError as exc:
        error = str(exc)
    pytest.fail(error, pytrace=False)


def generate(metafunc: pytest.Metafunc) -> None:
    """`pytest_generate_tests`: one call per fact of the marked set, ids = fact ids."""
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None or not any(name in metafunc.fixturenames for name in _PER_FACT):
        return
    fl = get_session(metafunc.config)
    try:
        fs = fl.factset(marker_path(fl, metafunc.definition, marker))
    except FactSetError as exc:
        # One case that errors at setup with the message; the module's other tests still run.
        metafunc.parametrize(CASE_PARAM, [(ERROR_CASE, str(exc))], ids=["factset-error"], indirect=True)
        return
    key = fl.relpath(fs.path)
    metafunc.parametrize(CASE_PARAM, [(key, spec.id) for spec in fs.facts], ids=[spec.id for spec in fs.facts],
                         indirect=True)


def case_of(item: pytest.Item) -> Case | None:
    """What a Python audit item audits (for the results), or None for unrelated tests."""
    callspec = getattr(item, "callspec", None)
    name = getattr(item, "originalname", item.name)
    if callspec is not None and CASE_PARAM in callspec.params:
        path, fact_id = callspec.params[CASE_PARAM]
        if path != ERROR_CASE:
            return Case(path, fact_id, name)
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    fl = get_session(item.config)
    path = marker_path(fl, item, marker)
    return Case(fl.relpath(path), None, name) if path.is_file() else None


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def locator(request: pytest.FixtureRequest) -> Locator:
    """The session's Locator (one model load per session and per xdist worker)."""
    return get_session(request.config).locator


@pytest.fixture
def _fl_case(request: pytest.FixtureRequest) -> tuple[str, str]:
    param = getattr(request, "param", None)
    if param is None:
        pytest.fail(f"{request.node.nodeid}: fact, fact_spec and trace need @pytest.mark.factset(\"factsets/name.yaml\") "
                    "on the test", pytrace=False)
    if param[0] == ERROR_CASE:
        pytest.fail(param[1], pytrace=False)
    return param


@pytest.fixture
def factset(request: pytest.FixtureRequest) -> FactSet:
    """The fact set named by the test's factset marker."""
    return _marked_factset(get_session(request.config), request.node)


@pytest.fixture
def fact_spec(_fl_case: tuple[str, str], factset: FactSet) -> FactSpec:
    return factset.fact(_fl_case[1])


@pytest.fixture
def fact(fact_spec: FactSpec) -> Fact:
    return fact_spec.fact


@pytest.fixture
def trace(request: pytest.FixtureRequest, factset: FactSet, fact_spec: FactSpec) -> Trace:
    """The fact's trace (from the cache when possible); unknown facts follow the set's rule."""
    return trace_fact(get_session(request.config), factset, fact_spec, request.node)


@pytest.fixture
def aggregate(request: pytest.FixtureRequest, factset: FactSet) -> Aggregate:
    """ATE/AIE over the marked set's known facts (traced through the cache, selected or not)."""
    agg = aggregate_for(get_session(request.config), factset)
    request.node.user_properties.extend([("ate", f"{agg.ate:.4f}"), ("n_facts", str(agg.n_facts))])
    return agg
