"""Every trace and run setting, once: name, type, default, parser, help and who may set it.

    Setting("samples", "N", parse_samples, 10, "Noise draws per fact.", CLI | PLUGIN | FACTSET)

The `fact-locator` commands (`add_cli_options`), the pytest plugin's `--fl-*` flags and
`fl_*` ini keys (`add_plugin_options`, `register_ini`) are generated from `SETTINGS`; the
fact-set loader takes its `settings:` keys from it (`FACTSET_KEYS`). The choice lists
(kinds, dtypes, corruption modes, metrics, methods, unknown rules) are defined here and
nowhere else. A parser takes the text a user typed and returns a plain value (str, int,
float, bool: pytest-xdist ships them to its workers) or raises `SettingValueError` with a
one-line reason. Nothing here imports torch.

To add a setting: one row in `SETTINGS` (and, for a trace setting, a field of `TraceSettings`).
"""

from __future__ import annotations

import argparse
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CACHE_ENV",
    "CORRUPTIONS",
    "DEVICE_MAPS",
    "DTYPES",
    "EXECUTORS",
    "FACTSET_KEYS",
    "KINDS",
    "KNOWN_RULES",
    "METHODS",
    "METRICS",
    "TARGET_METRICS",
    "NOISE_CALIBRATIONS",
    "PYTHON_PREFIX",
    "SETTINGS",
    "UNKNOWN_RULES",
    "Scope",
    "Setting",
    "SettingValueError",
    "UNDECIDED_OUTCOMES",
    "add_cli_options",
    "add_plugin_options",
    "register_ini",
    "setting",
]

KINDS: tuple[str, ...] = ("hidden", "mlp", "attn")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
# Gaussian noise (ROME), uniform noise of the same std, or symmetric token replacement.
CORRUPTIONS: tuple[str, ...] = ("gaussian", "uniform", "str")
# The effect measured: P(o), log P(o), or logit(o) - logit(distractor).
METRICS: tuple[str, ...] = ("prob", "logprob", "logit_diff")
# Which target the metric reads: its first token (ROME) or the whole target, teacher-forced.
TARGET_METRICS: tuple[str, ...] = ("first", "full")
METHODS: tuple[str, ...] = ("exact", "atp")
UNKNOWN_RULES: tuple[str, ...] = ("skip", "fail", "trace")
# What a calibrated noise is measured on: the model's reference subjects (ROME: one noise per
# model), the fact set's subjects, or each fact's own subject.
NOISE_CALIBRATIONS: tuple[str, ...] = ("model", "factset", "fact")
# When a fact counts as known: ROME's (the greedy continuation is the whole target) or the
# clean top-1 token is the target's first token.
KNOWN_RULES: tuple[str, ...] = ("greedy_target", "first_token")
# How pytest counts an expectation left undecided at the confidence level.
UNDECIDED_OUTCOMES: tuple[str, ...] = ("fail", "xfail", "skip")
# Where a pytest run's facts are traced: here (and in each xdist worker), or by Ray actors.
EXECUTORS: tuple[str, ...] = ("in-process", "ray")
PYTHON_PREFIX = "python:"
DEVICE_HINT = "auto, cpu, cuda, cuda:N or mps"
# accelerate's placement strategies for a model spread over devices (`device_map="auto"` and kin).
DEVICE_MAPS: tuple[str, ...] = ("auto", "balanced", "balanced_low_0", "sequential")
# Where models and traces are cached (default: the user cache folder).
CACHE_ENV = "FACT_LOCATOR_CACHE"


class SettingValueError(ValueError):
    """A value that does not parse; the message is one line, without the setting's name."""


class Scope(enum.Flag):
    """Who may set a setting."""

    CLI = enum.auto()  # a `fact-locator` command's flag (--samples)
    PLUGIN = enum.auto()  # pytest's --fl-samples and the ini key fl_samples
    FACTSET = enum.auto()  # a fact set's `settings:` (trace settings only)


CLI, PLUGIN, FACTSET = Scope.CLI, Scope.PLUGIN, Scope.FACTSET


# -- parsers ----------------------------------------------------------------------------------
def parse_model(value: str) -> str:
    """A built-in name, a local folder, a .gguf file, a hub id, or `python:module:function`."""
    value = str(value).strip()
    if not value:
        raise SettingValueError("the model spec is empty")
    if value.startswith(PYTHON_PREFIX):
        parts = value[len(PYTHON_PREFIX):].split(":")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise SettingValueError(
                f"{value!r}: write a custom model as python:module:function (a function returning a LoadedModel)")
        return value
    from fact_locator.errors import ModelLoadError
    from fact_locator.models.sources import resolve_spec

    try:
        resolve_spec(value)
    except ModelLoadError as exc:
        raise SettingValueError(str(exc)) from None
    return value


def parse_device(value: str) -> str:
    value = str(value).strip()
    if value in ("auto", "cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise SettingValueError(f"unknown device {value!r}: choose {DEVICE_HINT}")


def parse_gpu_list(value: str) -> str:
    """GPUs as CUDA_VISIBLE_DEVICES names them: indices or GPU-/MIG- UUIDs, e.g. `0,2,3`."""
    gpus = [g.strip() for g in str(value).split(",")]
    for gpu in gpus:
        if not (gpu.isdigit() or gpu.startswith(("GPU-", "MIG-"))):
            raise SettingValueError(f"{value!r}: {gpu!r} is not a GPU (give indices or GPU-/MIG- UUIDs, e.g. 0,2,3)")
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise SettingValueError(f"{value!r}: GPU {repeated[0]} is listed twice")
    return ",".join(gpus)


def parse_max_memory(value: str) -> str:
    """Memory per device for a device map, e.g. `0=70GiB,1=70GiB,cpu=200GiB`."""
    entries = [e.strip() for e in str(value).split(",") if e.strip()]
    for entry in entries:
        device, sep, size = (part.strip() for part in entry.partition("="))
        if not sep or not (device.isdigit() or device in ("cpu", "mps")) or not size[:1].isdigit():
            raise SettingValueError(f"{value!r}: {entry!r} is not DEVICE=SIZE (e.g. 0=70GiB,cpu=200GiB)")
    if not entries:
        raise SettingValueError("no memory limits given (e.g. 0=70GiB,cpu=200GiB)")
    return ",".join(entries)


def choice_parser(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = str(value).strip()
        if text not in choices:
            raise SettingValueError(f"unknown {name} {text!r}: choose one of {', '.join(choices)}")
        return text

    parse.__name__ = name
    return parse


def int_parser(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SettingValueError(f"{value!r} is not an integer") from None
        if number < minimum:
            raise SettingValueError(f"{number} is too small: give an integer >= {minimum}")
        return number

    parse.__name__ = f"int>={minimum}"
    return parse


AUTO_SAMPLES = "auto"
AUTO_START_SAMPLES = 8  # the first round of `samples: auto`


def parse_samples(value: str) -> int | str:
    """A number of noise draws (>= 1) or 'auto' (adaptive rounds, `adaptive_samples.py`)."""
    if str(value).strip().lower() == AUTO_SAMPLES:
        return AUTO_SAMPLES
    try:
        int(str(value).strip())
    except ValueError:
        raise SettingValueError(f"{value!r} is not an integer or 'auto' (a number of noise samples >= 1, or adaptive rounds)") from None
    return int_parser(1)(value)


def parse_non_negative(value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingValueError(f"{value!r} is not a number") from None
    if not number >= 0 or math.isinf(number):
        raise SettingValueError(f"give a finite number >= 0, got {value!r}")
    return number


def parse_confidence(value: str | float) -> float:
    """A confidence level strictly between 0 and 1 (0.95)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingValueError(f"{value!r} is not a confidence level: give a number between 0 and 1 (e.g. 0.95)") from None
    if isinstance(value, bool) or not 0 < number < 1:
        raise SettingValueError(f"a confidence level is between 0 and 1 (e.g. 0.95), got {value!r}")
    return number


AUTO_NOISE = 0.0  # `--fl-noise auto` as a plain float (xdist ships it); the plugin maps it to None


def parse_noise(value: str) -> float:
    """A positive float std; `auto` (or `calibrate`) means: calibrate it."""
    text = str(value).strip()
    if text.lower() in ("auto", "calibrate"):
        return AUTO_NOISE
    try:
        number = float(text)
    except ValueError:
        raise SettingValueError(f"{value!r} is not a number (a noise standard deviation, or 'auto')") from None
    if not number > 0 or math.isinf(number):
        raise SettingValueError(f"noise std must be a positive finite number, got {value!r}")
    return number


def parse_kinds(value: str) -> str:
    items = [k.strip() for k in str(value).split(",") if k.strip()]
    unknown = [k for k in items if k not in KINDS]
    if unknown:
        raise SettingValueError(f"unknown kind {unknown[0]!r}: choose from {', '.join(KINDS)}")
    if not items:
        raise SettingValueError(f"no kinds given: choose from {', '.join(KINDS)}")
    return ",".join(k for k in KINDS if k in items)


def parse_path(value: str) -> str:
    value = str(value).strip()
    if not value:
        raise SettingValueError("the path is empty")
    return value


def parse_glob(value: str) -> str:
    """One glob or several separated by commas, e.g. `factsets/*.yaml,extra/*.yml`."""
    globs = [g.strip() for g in str(value).split(",") if g.strip()]
    if not globs:
        raise SettingValueError("the fact-set glob is empty")
    return ",".join(globs)


def parse_shard(value: str) -> str:
    """`K/N`: shard K (1-based) of N."""
    text = str(value).strip()
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise SettingValueError(f"{value!r} is not a shard K/N with 1 <= K <= N (e.g. 1/4)")
    return f"{int(k)}/{int(n)}"


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingValueError(f"{value!r} is not a boolean (true/false)")


# -- the table --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One setting. `name` is the flag without its prefix (`--samples`, `--fl-samples`); the
    ini key is `fl_<name>` with '_' for '-'; a fact set writes `<name>` with '_'.
    `unset` says, in the help, what happens when the default is None."""

    name: str
    metavar: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    scopes: Scope
    flag: bool = False  # store_true
    unset: str = ""
    cli_name: str | None = None  # the name on `fact-locator` commands where it differs

    @property
    def dest(self) -> str:
        return "fl_" + self.name.replace("-", "_")

    @property
    def key(self) -> str:
        """The fact-set `settings:` key and TraceSettings field name."""
        return self.name.replace("-", "_")

    def default_text(self) -> str:
        if self.flag:
            return "off"
        if self.default is None:
            return self.unset
        return str(self.default)

    def argparse_type(self) -> Callable[[str], Any]:
        """The parser, raising what argparse turns into `error: argument --x: reason`."""

        def parse(value: str) -> Any:
            try:
                return self.parse(value)
            except SettingValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        parse.__name__ = self.name
        return parse


SETTINGS: tuple[Setting, ...] = (
    Setting("model", "SPEC", parse_model, "smollm2-135m",
            "Model to trace: a built-in name (smollm2-135m, gemma3-270m), a local transformers folder, "
            "a .gguf file, a hub id org/name, or python:module:function returning a LoadedModel "
            "(a custom or test model; not from a fact set).", CLI | PLUGIN | FACTSET),
    Setting("device", "DEVICE", parse_device, "auto", f"Device: {DEVICE_HINT}.", CLI | PLUGIN),
    Setting("devices", "GPUS", parse_gpu_list, None,
            "Under pytest-xdist with --fl-device cuda or auto: the GPUs (CUDA_VISIBLE_DEVICES entries, e.g. "
            "0,2,3) the workers take, worker k the entry k mod their number, set as the worker's own "
            "CUDA_VISIBLE_DEVICES before CUDA starts. Without -n or on the CPU nothing changes.", PLUGIN,
            unset="the caller's CUDA_VISIBLE_DEVICES, else every GPU"),
    Setting("device-map", "MAP", choice_parser("device map", DEVICE_MAPS), None,
            f"Spread the model's layers over devices with accelerate ({', '.join(DEVICE_MAPS)}): for a model "
            "larger than one GPU; layers that do not fit are offloaded to the CPU or disk.", CLI | PLUGIN,
            unset="none: the whole model on the device"),
    Setting("max-memory", "LIMITS", parse_max_memory, None,
            "With a device map: memory per device, e.g. 0=70GiB,1=70GiB,cpu=200GiB.", CLI | PLUGIN,
            unset="what each device has free"),
    Setting("offload-folder", "DIR", parse_path, None,
            "With a device map: the folder for layers offloaded to disk.", CLI | PLUGIN,
            unset="none (no disk offload)"),
    Setting("dtype", "DTYPE", choice_parser("dtype", DTYPES), "float32", f"Model dtype: {', '.join(DTYPES)}.",
            CLI | PLUGIN),
    Setting("samples", "N", parse_samples, 10,
            "Noise draws per fact, or 'auto': start with 8 and double only for facts whose verdicts are "
            "still undecided, up to max-samples.", CLI | PLUGIN | FACTSET),
    Setting("max-samples", "N", int_parser(AUTO_START_SAMPLES), 64,
            "With samples auto: the most noise draws a fact gets (8, 16, 32, ... up to this).", CLI | PLUGIN),
    Setting("confidence", "LEVEL", parse_confidence, 0.95,
            "The confidence level per-fact and aggregate expectations are decided at (docs/statistics.md): "
            "passed or failed when the interval (or peak probability) settles it, else undecided. "
            "An expectation's own confidence: beats it. fact-locator trace --samples auto: the level its TE "
            "and peak settle at.", CLI | PLUGIN | FACTSET),
    Setting("undecided", "AS", choice_parser("undecided outcome", UNDECIDED_OUTCOMES), "fail",
            "How pytest counts an undecided expectation: fail (CI never passes silently), xfail or skip.", PLUGIN),
    Setting("seed", "N", int_parser(0), 0, "Seed of the noise draws.", CLI | PLUGIN | FACTSET),
    Setting("window", "N", int_parser(1), 10, "Layers restored together for mlp/attn sites.", CLI | PLUGIN | FACTSET),
    Setting("noise", "STD", parse_noise, None,
            "Noise standard deviation, or 'auto': calibrated as noise_scale (3) x the std of the "
            "subject-token embeddings.", CLI | PLUGIN | FACTSET,
            unset="calibrated as noise_calibration says"),
    Setting("noise-scale", "X", parse_non_negative, 3.0,
            "Calibrated noise = noise_scale x the std of the subject-token embeddings.", FACTSET),
    Setting("noise-calibration", "WHAT", choice_parser("noise calibration", NOISE_CALIBRATIONS), "model",
            "What a calibrated noise is measured on: model (ROME: the embeddings of the package's reference "
            "subjects, each tokenized on its own; one noise per model, cached), factset (the subject tokens of "
            "the fact set's facts) or fact (the fact's own subject tokens).", CLI | PLUGIN | FACTSET),
    Setting("kinds", "KINDS", parse_kinds, ",".join(KINDS), f"Comma-separated site kinds: {', '.join(KINDS)}.",
            CLI | PLUGIN | FACTSET),
    Setting("corruption", "MODE", choice_parser("corruption", CORRUPTIONS), "gaussian",
            "How the subject is corrupted: gaussian noise (ROME), uniform noise of the same std, or str "
            "(symmetric token replacement: the fact's replacements:, else the other subjects of its set; "
            "those of the subject's token length are swapped in).", CLI | PLUGIN | FACTSET),
    Setting("metric", "METRIC", choice_parser("metric", METRICS), "prob",
            "What effects measure: prob (P(o), ROME), logprob (log P(o)) or logit_diff "
            "(logit(o) - logit(distractor); facts need a distractor).", CLI | PLUGIN | FACTSET),
    Setting("target-metric", "WHICH", choice_parser("target metric", TARGET_METRICS), "first",
            "Which target the metric reads: first (its first token, ROME) or full (the whole target, "
            "teacher-forced: the sum of log P(target token | prompt and the target's tokens before it); "
            "metric prob is then its exp; not with logit_diff).", CLI | PLUGIN | FACTSET),
    Setting("method", "METHOD", choice_parser("method", METHODS), "exact",
            "exact: causal tracing; atp: attribution patching, a gradient approximation "
            "(one backward pass per fact; traces are marked approximate).", CLI | PLUGIN),
    Setting("severed", "", parse_bool, False,
            "Also compute severed paths per traced fact (the paper's Figure 3): the shares of the last "
            "subject token's hidden-state effect that go through the later MLPs and attention.",
            CLI | PLUGIN, flag=True),
    Setting("cache-dir", "DIR", parse_path, None,
            "Cache root: traces go in DIR/traces, converted models in DIR/models.", CLI | PLUGIN,
            unset=f"${CACHE_ENV}, else the user cache folder"),
    Setting("no-cache", "", parse_bool, False, "Neither read nor write the trace cache.", CLI | PLUGIN, flag=True),
    Setting("json", "PATH", parse_path, None, "Write the run's results (every trace and outcome) as JSON here.",
            PLUGIN, unset="none (no results file)"),
    Setting("html", "PATH", parse_path, None, "Write an HTML report here.", PLUGIN, unset="none (no report)"),
    Setting("factsets", "GLOB", parse_glob, "factsets/*.yaml",
            "Which YAML files in collected folders are fact sets: globs separated by commas, relative to "
            "the ini file's folder (on the command line: the current folder). A YAML file named on the "
            "command line is always one.", PLUGIN),
    Setting("unknown", "RULE", choice_parser("rule", UNKNOWN_RULES), None,
            "What to do with facts the model does not know (clean top-1 is not the target, or "
            "p_clean < min_p_clean): skip, fail or trace.", PLUGIN,
            unset="the fact set's unknown:, else skip"),
    Setting("known-rule", "RULE", choice_parser("known rule", KNOWN_RULES), None,
            "When a fact counts as known: greedy_target (ROME: the greedy continuation of as many tokens as the "
            "target has is the target) or first_token (the clean top-1 token is the target's first token).",
            PLUGIN, unset="the fact set's known_rule:, else greedy_target"),
    Setting("baseline", "PATH", parse_path, None,
            "A results JSON of an earlier run: each traced fact it has gets a ::baseline item "
            "(peaks must not move, TE must not drop) and each fact set an ::aggregate::baseline item.",
            PLUGIN, unset="none (no baseline items)"),
    Setting("executor", "NAME", choice_parser("executor", EXECUTORS), "in-process",
            "Where the facts are traced: in-process (this process, or each xdist worker) or ray (a pool of "
            "Ray actors that load the model once each; needs pip install 'fact-locator[ray]'; not with -n).",
            PLUGIN),
    Setting("ray-address", "ADDR", parse_path, None,
            "With --fl-executor ray: the Ray cluster to join (auto, or ray://host:10001).", PLUGIN,
            unset="a local Ray instance"),
    Setting("ray-workers", "N", int_parser(1), None,
            "With --fl-executor ray: the number of actors (on CPUs the cores are split between them).", PLUGIN,
            unset="one per GPU of the cluster, else one CPU actor"),
    Setting("shard", "K/N", parse_shard, None,
            "Trace only shard K of N: a fixed 1/N of the facts, chosen by a hash of the fact set's path and the "
            "fact's id (all items of a fact on one shard). Aggregates are left to `fact-locator merge`.",
            PLUGIN, unset="all facts"),
    Setting("baseline-max-layer-shift", "K", int_parser(0), 2, "Baseline: the most layers a peak may move.",
            CLI | PLUGIN, cli_name="max-layer-shift"),
    Setting("baseline-max-ate-drop", "X", parse_non_negative, 0.05, "Baseline: the most a fact set's ATE may drop.",
            CLI | PLUGIN, cli_name="max-ate-drop"),
    Setting("baseline-max-te-drop", "X", parse_non_negative, 0.1, "Baseline: the most a fact's TE may drop.",
            CLI | PLUGIN, cli_name="max-te-drop"),
    Setting("baseline-allow-noise-change", "", parse_bool, False,
            "Baseline: compare runs traced under different noise (value or source) with a warning instead of "
            "failing; their effects are not comparable.", CLI | PLUGIN, cli_name="allow-noise-change", flag=True),
)

_BY_NAME = {s.name: s for s in SETTINGS}
FACTSET_KEYS: tuple[str, ...] = tuple(s.key for s in SETTINGS if FACTSET in s.scopes)


def setting(name: str) -> Setting:
    return _BY_NAME[name]


# -- generated interfaces ---------------------------------------------------------------------
def add_plugin_options(addoption: Callable[..., None], names: Iterable[str] | None = None) -> None:
    """`--fl-<name>` flags. Their argparse default is None ("not given on the command line"):
    the plugin then looks at the ini key, the fact set and the table's default, in that order."""
    for spec in _selected(PLUGIN, names):
        fallback = f"Default: ini {spec.dest}, else {spec.default_text()}."
        if spec.flag:
            addoption(f"--fl-{spec.name}", action="store_true", dest=spec.dest, default=None,
                      help=f"{spec.help} {fallback}")
        else:
            addoption(f"--fl-{spec.name}", dest=spec.dest, metavar=spec.metavar, type=spec.argparse_type(),
                      default=None, help=f"{spec.help} {fallback}")


def register_ini(addini: Callable[..., None]) -> None:
    for spec in _selected(PLUGIN, None):
        addini(spec.dest, help=f"Like --fl-{spec.name}. {spec.help}", type="string", default=None)


def add_cli_options(add: Callable[..., None], names: Iterable[str]) -> None:
    """Flags of a `fact-locator` command, with the table's defaults filled in."""
    for spec in _selected(CLI, names):
        name = spec.cli_name or spec.name
        dest = name.replace("-", "_")
        if spec.flag:
            add(f"--{name}", action="store_true", dest=dest, help=f"{spec.help} Default: off.")
        else:
            add(f"--{name}", dest=dest, metavar=spec.metavar, type=spec.argparse_type(), default=spec.default,
                help=f"{spec.help} Default: {spec.default_text()}.")


def _selected(scope: Scope, names: Iterable[str] | None) -> list[Setting]:
    if names is None:
        return [s for s in SETTINGS if scope in s.scopes]
    chosen = [_BY_NAME[n] for n in names]
    wrong = [s.name for s in chosen if scope not in s.scopes]
    if wrong:
        raise ValueError(f"settings {wrong} are not {scope.name} settings")
    return chosen
