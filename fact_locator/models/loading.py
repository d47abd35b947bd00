"""Model spec -> (model, tokenizer, adapter, identity), on the requested device and dtype."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fact_locator.errors import DeviceError, FactLocatorError, ModelLoadError
from fact_locator.models.adapters import ModelAdapter, adapter_for, config_size
from fact_locator.models.identity import ModelIdentity

__all__ = ["LoadedModel", "from_objects", "load_model", "resolve_device", "torch_dtype"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    adapter: ModelAdapter
    identity: ModelIdentity
    device: str

    @property
    def n_layers(self) -> int:
        return self.identity.n_layers

    @property
    def max_length(self) -> int | None:
        """The model's context length in tokens, where its config says."""
        return config_size(self.model.config, "context")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available here (use --device cpu)")
        if ":" in device:
            index = device.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise DeviceError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but MPS is not available here")
    return device


def torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise DeviceError(f"unknown dtype {name!r}: choose one of {', '.join(dtypes)}")
    return dtypes[name]


@contextlib.contextmanager
def _wrap_load_errors(spec: str) -> Iterator[None]:
    """Third-party loading errors become one ModelLoadError line naming the spec."""
    try:
        yield
    except FactLocatorError:
        raise
    except Exception as exc:
        # safetensors raises its own SafetensorError (not an OSError) for a truncated file.
        if not isinstance(exc, (OSError, ValueError, KeyError, RuntimeError, ImportError)) and \
                type(exc).__name__ != "SafetensorError":
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if type(exc).__name__ == "SafetensorError":
            first = f"a *.safetensors file is truncated or corrupt ({first})"
        raise ModelLoadError(f"cannot load model {spec!r}: {first}") from exc


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load a built-in name, a local directory, a .gguf file or a hub id."""
    from fact_locator.models import sources

    source = sources.resolve_spec(spec)
    device = resolve_device(device)
    torch_dtype(dtype)
    if source.kind == "builtin":
        folder: str = str(sources.ensure_builtin(spec, cache_dir=cache_dir, progress=progress))
    elif source.kind == "gguf_file":
        assert source.path is not None
        folder = str(sources.ensure_gguf_converted(source.path, cache_dir=cache_dir, progress=progress))
    elif source.kind == "local_dir":
        assert source.path is not None
        _refuse_pickled_weights(source.path)
        folder = str(source.path)
    else:
        folder = spec
    with _wrap_load_errors(spec):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # Our own progress and errors speak for the load; transformers' bars would repeat them.
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code
        )
    if source.kind == "hub_id":
        fingerprint = _hub_fingerprint(model, spec)
    else:
        fingerprint = sources.weights_fingerprint(Path(folder))
    return from_objects(model, tokenizer, name=spec, fingerprint=fingerprint, device=device, dtype=dtype)


def from_objects(
    model: Any, tokenizer: Any, name: str, fingerprint: str | None = None, device: str = "cpu", dtype: str = "float32"
) -> LoadedModel:
    """Wrap an already built model (tests build tiny ones from configs)."""
    adapter = adapter_for(model)
    model.to(device=resolve_device(device), dtype=torch_dtype(dtype))
    model.eval()
    identity = ModelIdentity(
        name=name,
        architecture=type(model).__name__,
        n_layers=adapter.num_layers(model),
        fingerprint=fingerprint or _parameter_fingerprint(model),
        dtype=dtype,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, identity=identity, device=str(next(model.parameters()).device))


def _refuse_pickled_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ModelLoadError(
            f"{folder}: weights only in pickle files ({', '.join(pickled)}); fact-locator never unpickles weights "
            "because unpickling can run arbitrary code. Convert them to safetensors first"
        )
    raise ModelLoadError(f"{folder}: no *.safetensors weights in this directory")


def _hub_fingerprint(model: Any, spec: str) -> str:
    revision = getattr(model.config, "_commit_hash", None)
    return f"hub:{spec}@{revision}" if revision else _parameter_fingerprint(model)


def _parameter_fingerprint(model: Any) -> str:
    """sha256 over parameter names and bytes: identity for models that have no files."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()
