"""A pytester wired for fact-locator, shared by the plugin tests and the robustness suite:
an ini with the tiny model (`python:fl_tiny:llama`, samples 2), a temp trace cache, and a
log of every trace computed. Each conftest builds its `fl` fixture from `FL`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent
ROOT = SUPPORT.parents[1]

# Logs every trace computed (not read from the cache) to $FL_TRACE_LOG, one fact id per line,
# through the plugin's pytest_fl_trace hook. $FL_TRACE_SLEEP slows each one. With
# $FL_INTERRUPT_AFTER=N, a KeyboardInterrupt (a Ctrl-C) follows the N-th computed trace,
# after its cache entry was written.
COUNTING_CONFTEST = """
import os, time

_computed = []

def pytest_fl_trace(config, fact, trace, cached):
    if cached:
        return
    _computed.append(fact.id)
    with open(os.environ["FL_TRACE_LOG"], "a") as log:
        log.write(fact.id + "\\n")
        log.flush()
    time.sleep(float(os.environ.get("FL_TRACE_SLEEP", "0")))
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
    """A pytester set up for fact-locator: ini (tiny llama, samples 2), cache, trace log."""

    def __init__(self, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 subprocess_timeout: float = 300):
        self.pytester = pytester
        self.path = pytester.path
        self.cache = tmp_path / "fl-cache"
        self.log = tmp_path / "traces.log"
        self.subprocess_timeout = subprocess_timeout
        # The inner sessions name the model `python:fl_tiny:<function>`, as a user's project
        # would name a module of its own folder; fl_tiny itself imports tests.support.
        pytester.syspathinsert(ROOT)
        pytester.syspathinsert(SUPPORT)
        monkeypatch.setenv("FACT_LOCATOR_CACHE", str(self.cache))
        monkeypatch.setenv("FL_TRACE_LOG", str(self.log))
        monkeypatch.delenv("FL_INTERRUPT_AFTER", raising=False)
        monkeypatch.delenv("FL_TRACE_SLEEP", raising=False)
        # Subprocess runs (xdist, interrupts) find the same modules through PYTHONPATH.
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
        pytester.makeconftest(COUNTING_CONFTEST)
        self.ini()

    def ini(self, **values: object) -> None:
        lines = ["[pytest]"]
        lines += [f"{k} = {v}" for k, v in {"fl_model": "python:fl_tiny:llama", "fl_samples": 2, **values}.items()]
        self.pytester.makeini("\n".join(lines) + "\n")

    def factset(self, name: str, text: str | bytes) -> Path:
        path = self.path / "factsets" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

    def run_subprocess(self, *args: str, timeout: float | None = None) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args,
                                                  timeout=self.subprocess_timeout if timeout is None else timeout)

    def traced(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def results(self, name: str = "results.json") -> dict:
        return json.loads((self.path / name).read_text(encoding="utf-8"))


def import_heavy_modules() -> None:
    """Import torch, transformers and the tiny models in this process once: pytester's
    in-process runs drop modules first imported inside them, and torch cannot be imported twice."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM  # noqa: F401

    import fact_locator.models.loading  # noqa: F401
    import fact_locator.report.html  # noqa: F401
    import fact_locator.tracing.tracer  # noqa: F401
    import tests.support.tiny_models  # noqa: F401
