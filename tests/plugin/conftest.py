"""Plugin tests run inner pytest sessions (pytester) on tiny random models: the model is
`python:fl_tiny:llama`, the trace cache a temp folder, samples 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TESTS = HERE.parent

# Logs every trace computed (not read from the cache) to $FL_TRACE_LOG, one fact id per line,
# through the plugin's pytest_fl_trace hook. With $FL_INTERRUPT_AFTER=N, a KeyboardInterrupt
# (a Ctrl-C) follows the N-th computed trace, after its cache entry was written.
COUNTING_CONFTEST = """
import os

_computed = []

def pytest_fl_trace(config, fact, trace, cached):
    if cached:
        return
    _computed.append(fact.id)
    with open(os.environ["FL_TRACE_LOG"], "a") as log:
        log.write(fact.id + "\\n")
    limit = os.environ.get("FL_INTERRUPT_AFTER")
    if limit is not None and len(_computed) >= int(limit):
        raise KeyboardInterrupt
"""

GEO = """\
name: geo
description: two landmarks
unknown: trace
expect:
  - te: ">= -1"
aggregate:
  - ate: ">= -1"
facts:
  - id: colosseum
    subject: The Colosseum
    relation: "{} is located in the country of"
    target: Italy
    expect:
      - hidden-peak: {at: last_subject, xfail: "tiny random model"}
  - id: toyota
    subject: Toyota
    relation: "{} was founded in the country of"
    target: Japan
"""


class FL:
    """A pytester set up for fact-locator: ini, tiny model, cache, trace log."""

    def __init__(self, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.pytester = pytester
        self.cache = tmp_path / "fl-cache"
        self.log = tmp_path / "traces.log"
        pytester.syspathinsert(TESTS)
        pytester.syspathinsert(HERE)
        monkeypatch.setenv("FACT_LOCATOR_CACHE", str(self.cache))
        monkeypatch.setenv("FL_TRACE_LOG", str(self.log))
        monkeypatch.delenv("FL_INTERRUPT_AFTER", raising=False)
        # Subprocess runs (xdist, interrupts) find the test helpers through PYTHONPATH.
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(HERE), os.environ.get("PYTHONPATH", "")]))
        pytester.makeconftest(COUNTING_CONFTEST)

    def ini(self, **values: object) -> None:
        lines = ["[pytest]", "fl_model = python:fl_tiny:llama"]
        lines += [f"{k} = {v}" for k, v in {"fl_samples": 2, **values}.items()]
        self.pytester.makeini("\n".join(lines) + "\n")

    def factset(self, name: str, text: str) -> Path:
        path = self.pytester.path / "factsets" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

    def run_subprocess(self, *args: str, timeout: float = 120) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)

    def traced(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def results(self, name: str = "results.json") -> dict:
        return json.loads((self.pytester.path / name).read_text())


@pytest.fixture(scope="session")
def _heavy_imports() -> None:
    """Import torch and transformers in this process once: pytester's in-process runs drop
    modules first imported inside them, and torch cannot be imported twice."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, LlamaForCausalLM  # noqa: F401

    sys.path.insert(0, str(TESTS))
    import tiny_models  # noqa: F401

    import fact_locator.models.loading  # noqa: F401
    import fact_locator.tracing.tracer  # noqa: F401


@pytest.fixture
def fl(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _heavy_imports: None) -> FL:
    helper = FL(pytester, tmp_path, monkeypatch)
    helper.ini()
    return helper
