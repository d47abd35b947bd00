"""Model spec -> (model, tokenizer, adapter, identity), on the requested device and dtype."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fact_locator.errors import DeviceError, FactLocatorError, ModelLoadError
from fact_locator.models.adapters import ModelAdapter, adapter_for, config_size
from fact_locator.models.identity import ModelIdentity
from fact_locator.settings import DEVICE_MAPS

__all__ = ["DEVICE_MAPS", "DeviceMap", "LoadedModel", "device_map_of", "execution_device", "from_objects", "load_model", "resolve_device", "torch_dtype"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class DeviceMap:
    """How accelerate spreads a model over devices (`--fl-device-map`, `--max-memory`,
    `--offload-folder`): what `load_model` takes as device_map, max_memory, offload_folder."""

    strategy: str | Mapping[str, Any]
    max_memory: Mapping[Any, str] | None = None
    offload_folder: str | None = None

    @classmethod
    def from_options(cls, strategy: str | None, max_memory: str | None, offload_folder: str | None) -> DeviceMap | None:
        """From the settings' text (`max_memory` as "0=70GiB,cpu=200GiB"); None without a map."""
        if strategy is None:
            if max_memory is not None or offload_folder is not None:
                raise DeviceError("--max-memory and --offload-folder only apply with a device map (--device-map auto)")
            return None
        limits: dict[Any, str] | None = None
        if max_memory is not None:
            limits = {}
            for entry in max_memory.split(","):
                device, _, size = (part.strip() for part in entry.partition("="))
                limits[int(device) if device.isdigit() else device] = size
        return cls(strategy, limits, offload_folder)


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
    device_map: str | Mapping[str, Any] | None = None,
    max_memory: Mapping[Any, str] | None = None,
    offload_folder: Path | str | None = None,
) -> LoadedModel:
    """Load a built-in name, a local directory, a .gguf file or a hub id.

    With `device_map` ("auto", "balanced", "balanced_low_0", "sequential", or a dict of
    module path -> device, "cpu" or "disk") transformers and accelerate spread the layers
    over the devices, within `max_memory` per device ({0: "20GiB", "cpu": "60GiB"}),
    offloading what does not fit to the CPU or to `offload_folder` on disk: for a model
    larger than one GPU. `device` then names the device type only ("auto" or "cpu": where
    accelerate places the model; "cuda", "mps": only there). Traces equal those of the
    model on one device, and so do their cache keys (`LoadedModel.device` is where the
    embeddings compute).
    """
    from fact_locator.models import sources

    source = sources.resolve_spec(spec)
    device = resolve_device(device)
    torch_dtype(dtype)
    placement = _placement_kwargs(device, device_map, max_memory, offload_folder)
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
            folder, dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code, **placement
        )
    if source.kind == "hub_id":
        fingerprint = _hub_fingerprint(model, spec)
    else:
        fingerprint = sources.weights_fingerprint(Path(folder))
    return from_objects(model, tokenizer, name=spec, fingerprint=fingerprint, device=device, dtype=dtype)


def _placement_kwargs(device: str, device_map: str | Mapping[str, Any] | None, max_memory: Mapping[Any, str] | None,
                      offload_folder: Path | str | None) -> dict[str, Any]:
    """from_pretrained's keyword arguments for a device map; {} without one."""
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise DeviceError("max_memory and offload_folder only apply with a device map (device_map='auto')")
        return {}
    if isinstance(device_map, str) and device_map not in DEVICE_MAPS:
        raise DeviceError(f"unknown device map {device_map!r}: choose one of {', '.join(DEVICE_MAPS)}, or a dict")
    memory = dict(max_memory) if max_memory is not None else None
    if memory is None and device == "cpu" and isinstance(device_map, str):
        # accelerate fills the GPUs first: asked for the CPU, it gets none.
        memory = {"cpu": _cpu_memory()}
    kwargs: dict[str, Any] = {"device_map": dict(device_map) if isinstance(device_map, Mapping) else device_map}
    if memory is not None:
        kwargs["max_memory"] = memory
    if offload_folder is not None:
        kwargs["offload_folder"] = str(offload_folder)
    return kwargs


def _cpu_memory() -> int:
    """The host's available memory in bytes, which accelerate's own default takes too."""
    import psutil

    return int(psutil.virtual_memory().available)


def from_objects(
    model: Any, tokenizer: Any, name: str, fingerprint: str | None = None, device: str = "cpu", dtype: str = "float32"
) -> LoadedModel:
    """Wrap an already built model (tests build tiny ones from configs)."""
    adapter = adapter_for(model)
    if device_map_of(model) is None:
        model.to(device=resolve_device(device), dtype=torch_dtype(dtype))
        placed = str(next(model.parameters()).device)
    else:
        # accelerate placed the layers (and may have offloaded some): moving the model would
        # undo that; its dtype was chosen at load time.
        placed = execution_device(model.get_submodule(adapter.embed))
    model.eval()
    identity = ModelIdentity(
        name=name,
        architecture=type(model).__name__,
        n_layers=adapter.num_layers(model),
        fingerprint=fingerprint or _parameter_fingerprint(model),
        dtype=dtype,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, identity=identity, device=placed)


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


def device_map_of(model: Any) -> dict[str, Any] | None:
    """accelerate's placement of a model loaded with a device map (module path -> device,
    "cpu" or "disk"); None for a model on one device."""
    placement = getattr(model, "hf_device_map", None)
    return dict(placement) if placement else None


def execution_device(module: Any) -> str:
    """Where `module` computes: the execution device of its accelerate hook (an offloaded
    module's weights wait on the CPU or disk, but it runs here), else its parameters'."""
    import torch

    hook = getattr(module, "_hf_hook", None)
    chosen = getattr(hook, "execution_device", None)
    if chosen is None:
        chosen = next((p.device for p in module.parameters() if p.device.type != "meta"), "cpu")
    if isinstance(chosen, int):  # accelerate names a GPU by its index
        chosen = f"cuda:{chosen}"
    return str(torch.device(chosen))
