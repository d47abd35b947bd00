"""The public API is pinned: a change to it is a decision, not an accident."""

import subprocess
import sys

import fact_locator

PUBLIC = [
    "Aggregate", "CacheError", "DeviceError", "ExpectationFailed", "ExpectationUndecided", "Fact", "FactError", "FactLocatorError",
    "FactSetError", "LoadedModel", "ModelAdapter", "ModelIdentity", "ModelLoadError", "NoiseInfo", "ResultsError",
    "RunResults", "TokenCategory", "Trace", "TraceError", "TraceSettings", "Tracer", "UnsupportedArchitectureError",
    "UsageError", "__version__", "aggregate", "load_model", "register_adapter",
]


def test_all_is_pinned():
    assert sorted(fact_locator.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves():
    for name in fact_locator.__all__:
        assert getattr(fact_locator, name) is not None


def test_every_error_has_one_root():
    for name in [n for n in PUBLIC if n.endswith("Error") or n.startswith("Expectation")]:
        assert issubclass(getattr(fact_locator, name), fact_locator.FactLocatorError)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, fact_locator, fact_locator.cli, fact_locator.results; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
