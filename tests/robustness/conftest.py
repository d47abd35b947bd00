"""Shared set-up for the bad-input suite: a pytester wired for fact-locator (tiny model,
temp trace cache, a trace log), tiny model folders on disk, and the checks every case makes:
one clear line, the documented exit code, no traceback, no half-written output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TESTS = HERE.parent
PLUGIN_TESTS = TESTS / "plugin"

# Logs every computed trace (fact id per line) to $FL_TRACE_LOG; $FL_TRACE_SLEEP slows each one.
COUNTING_CONFTEST = """
import os, time

def pytest_fl_trace(config, fact, trace, cached):
    if cached:
        return
    with open(os.environ["FL_TRACE_LOG"], "a") as log:
        log.write(fact.id + "\\n")
        log.flush()
    time.sleep(float(os.environ.get("FL_TRACE_SLEEP", "0")))
"""


class FL:
    """A pytester set up for fact-locator: ini (tiny llama, samples 2), cache, trace log."""

    def __init__(self, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.pytester = pytester
        self.path = pytester.path
        self.cache = tmp_path / "fl-cache"
        self.log = tmp_path / "traces.log"
        pytester.syspathinsert(TESTS)
        pytester.syspathinsert(PLUGIN_TESTS)
        monkeypatch.setenv("FACT_LOCATOR_CACHE", str(self.cache))
        monkeypatch.setenv("FL_TRACE_LOG", str(self.log))
        monkeypatch.delenv("FL_TRACE_SLEEP", raising=False)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(PLUGIN_TESTS), os.environ.get("PYTHONPATH", "")]))
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

    def run_subprocess(self, *args: str, timeout: float = 300) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)

    def traced(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def results(self, name: str = "results.json") -> dict:
        return json.loads((self.path / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def _heavy_imports() -> None:
    """torch / transformers imported once in this process (pytester's in-process runs drop
    modules first imported inside them, and torch cannot be imported twice)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM  # noqa: F401

    sys.path.insert(0, str(TESTS))
    import tiny_models  # noqa: F401

    import fact_locator.models.loading  # noqa: F401
    import fact_locator.report.html  # noqa: F401
    import fact_locator.tracing.tracer  # noqa: F401


@pytest.fixture
def fl(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _heavy_imports: None) -> FL:
    return FL(pytester, tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny model folders, each broken in one way (and one good one)."""
    import shutil

    from tiny_models import tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    tiny_model("llama").save_pretrained(good)
    tiny_tokenizer().save_pretrained(good)
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    weights = next(truncated.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_tokenizer = root / "no-tokenizer"
    tiny_model("llama").save_pretrained(no_tokenizer)
    pickled = root / "pickle-only"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    no_config = root / "no-config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    (root / "garbage.gguf").write_bytes(b"this is not a GGUF file at all")
    (root / "zeros.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    (root / "weights.txt").write_text("not a model")
    import numpy as np
    import gguf

    writer = gguf.GGUFWriter(str(root / "foo-arch.gguf"), "foo")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"good": good, "truncated": truncated, "no-tokenizer": no_tokenizer, "pickle-only": pickled,
            "no-config": no_config, "garbage.gguf": root / "garbage.gguf", "zeros.gguf": root / "zeros.gguf",
            "foo-arch.gguf": root / "foo-arch.gguf", "weights.txt": root / "weights.txt",
            "missing": root / "does-not-exist"}


def assert_one_clean_line(text: str, *needles: str) -> None:
    """The error text names what is wrong (every needle) and holds no traceback."""
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def assert_no_partial_files(folder: Path) -> None:
    """No temporary file left behind, and every results/report/trace file is complete."""
    leftovers = [p for p in folder.rglob("*.tmp")]
    assert not leftovers, leftovers
    for path in folder.rglob("*.json"):
        if "fl-cache" in path.parts or path.name.startswith("."):
            continue
        json.loads(path.read_text(encoding="utf-8"))
    for path in folder.rglob("*.html"):
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path
