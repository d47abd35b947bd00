"""Converting a GGUF file into a plain safetensors checkpoint folder that transformers loads.

transformers reads the GGUF (dequantised to float32); its weights are copied into a fresh model
of the same class and saved with ``save_pretrained``. The result is reloaded and must reproduce
the GGUF model's tokens and logits on `CHECK_PROMPT` within `CHECK_TOLERANCE`, so a bad
conversion fails here and not in a trace. torch and transformers are imported inside the
functions: importing this module stays light.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fact_locator.errors import ModelLoadError
from fact_locator.models.cache_writes import write_json_atomic
from fact_locator.models.progress import Progress

if TYPE_CHECKING:
    import torch

__all__ = ["CHECK_PROMPT", "CHECK_TOLERANCE", "SOURCE_FILE", "convert_gguf"]

#: Name of the small JSON file written into every converted folder (what it was made from).
SOURCE_FILE = "fact_locator_source.json"

#: The prompt used to check that a conversion reproduces the GGUF model's logits.
CHECK_PROMPT = "The Colosseum is located in the country of"
#: Largest |logit difference| accepted between the GGUF-loaded and the converted model.
CHECK_TOLERANCE = 1e-3


def _load_gguf_model(gguf_path: Path) -> tuple[Any, Any]:
    """The GGUF file loaded by transformers as a dense float32 model (eval mode) + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    kwargs: dict[str, Any] = {"gguf_file": name, "dtype": torch.float32}
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


def _plain_copy(gguf_model: Any) -> Any:
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


def _logits(model: Any, tokenizer: Any, prompt: str = CHECK_PROMPT) -> torch.Tensor:
    import torch

    batch = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[0].float()


def _convert_into(gguf_path: Path, out_dir: Path, progress: Progress) -> dict[str, Any]:
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


def convert_gguf(
    gguf_path: Path, out_dir: Path, progress: bool | Progress = True, *, _source: dict[str, Any] | None = None
) -> Path:
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
    reporter = progress if isinstance(progress, Progress) else Progress(bool(progress))
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        info = _convert_into(gguf_path, tmp, reporter)
        source = {"gguf_file": gguf_path.name, **(_source or {}), **(info or {})}
        write_json_atomic(tmp / SOURCE_FILE, source)
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
