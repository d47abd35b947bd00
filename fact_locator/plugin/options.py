"""The `--fl-*` options: parsers, the option table, and the precedence rule.

Precedence for every value: command line > ini (`[tool.pytest.ini_options]`, `fl_*`) >
the fact set's `settings:` (trace settings only) > the built-in default. Argparse defaults
are therefore `None` ("not given here"); `resolve_options` fills in the rest. Parsed values
stay plain `str`/`int`/`float`/`bool` so that pytest-xdist can ship them to its workers.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULTS",
    "OPTIONS",
    "TRACE_KEYS",
    "UNKNOWN_RULES",
    "OptionSpec",
    "ResolvedOptions",
    "add_run_options",
    "add_trace_options",
    "register_ini",
    "resolve_options",
]

UNKNOWN_RULES = ("skip", "fail", "trace")
DEVICE_HINT = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("float32", "float16", "bfloat16")
CORRUPTIONS = ("gaussian", "uniform", "str")
METRICS = ("prob", "logprob", "logit_diff")
METHODS = ("exact", "atp")
KINDS = ("hidden", "mlp", "attn")
PYTHON_PREFIX = "python:"

# Trace settings a fact set's `settings:` may set (device and dtype belong to the session:
# one model is loaded per session).
TRACE_KEYS = ("kinds", "samples", "noise", "noise_scale", "window", "seed", "batch_size", "corruption", "metric")
# Options a fact set's `settings:` may also set (below cli/ini, above the default).
FACTSET_SETTABLE = ("samples", "seed", "window", "kinds", "noise", "corruption", "metric")


# -- parsers (argparse `type=`): raise ArgumentTypeError with a one-line reason -------------
def parse_model(value: str) -> str:
    """A built-in name, a local dir, a .gguf file, a hub id, or `python:module:function`."""
    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("the model spec is empty")
    if value.startswith(PYTHON_PREFIX):
        parts = value[len(PYTHON_PREFIX):].split(":")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise argparse.ArgumentTypeError(
                f"{value!r}: write a custom model as python:module:function (a function returning a LoadedModel)"
            )
        return value
    from fact_locator.errors import ModelLoadError
    from fact_locator.models.sources import resolve_spec

    try:
        resolve_spec(value)
    except ModelLoadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_device(value: str) -> str:
    value = value.strip()
    if value in ("auto", "cpu", "cuda", "mps"):
        return value
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    raise argparse.ArgumentTypeError(f"unknown device {value!r}: choose {DEVICE_HINT}")


def parse_dtype(value: str) -> str:
    value = value.strip()
    if value not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {value!r}: choose one of {', '.join(DTYPES)}")
    return value


def _int_parser(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{number} is too small: give an integer >= {minimum}")
        return number

    parse.__name__ = f"int>={minimum}"
    return parse


def _choice_parser(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = str(value).strip()
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {name} {text!r}: choose one of {', '.join(choices)}")
        return text

    parse.__name__ = name
    return parse


parse_corruption = _choice_parser("corruption", CORRUPTIONS)
parse_metric = _choice_parser("metric", METRICS)
parse_method = _choice_parser("method", METHODS)


def parse_non_negative(value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"give a finite number >= 0, got {value!r}")
    return number


parse_samples = _int_parser(1)
parse_layer_shift = _int_parser(0)
parse_window = _int_parser(1)
parse_seed = _int_parser(0)


def parse_noise(value: str) -> float:
    """A positive float std; `auto` (or `calibrate`) means: calibrate per fact set."""
    text = str(value).strip()
    if text.lower() in ("auto", "calibrate"):
        return 0.0  # 0.0 = calibrate (a plain float for xdist); resolve_options maps it to None
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number (a noise standard deviation, or 'auto')") from None
    if not number > 0 or number != number or number == float("inf"):
        raise argparse.ArgumentTypeError(f"noise std must be a positive finite number, got {value!r}")
    return number


def parse_kinds(value: str) -> str:
    items = [k.strip() for k in str(value).split(",") if k.strip()]
    unknown = [k for k in items if k not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind {unknown[0]!r}: choose from {', '.join(KINDS)}")
    if not items:
        raise argparse.ArgumentTypeError(f"no kinds given: choose from {', '.join(KINDS)}")
    return ",".join(k for k in KINDS if k in items)


def parse_path(value: str) -> str:
    value = str(value).strip()
    if not value:
        raise argparse.ArgumentTypeError("the path is empty")
    return value


def parse_glob(value: str) -> str:
    """One glob or several separated by commas, e.g. `factsets/*.yaml,extra/*.yml`."""
    globs = [g.strip() for g in str(value).split(",") if g.strip()]
    if not globs:
        raise argparse.ArgumentTypeError("the fact-set glob is empty")
    return ",".join(globs)


def parse_unknown(value: str) -> str:
    value = str(value).strip()
    if value not in UNKNOWN_RULES:
        raise argparse.ArgumentTypeError(f"unknown rule {value!r}: choose {', '.join(UNKNOWN_RULES)}")
    return value


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class OptionSpec:
    """One `--fl-<name>` flag and its `fl_<name>` ini key."""

    name: str  # without prefix, e.g. "samples"
    metavar: str
    parse: Callable[[str], Any]
    default: Any  # the built-in default, applied last
    help: str
    family: str  # "trace" (reused by the CLI) or "run" (pytest only)
    flag: bool = False  # store_true

    @property
    def dest(self) -> str:
        return "fl_" + self.name.replace("-", "_")


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", "SPEC", parse_model, "smollm2-135m",
               "Model to trace: a built-in name (smollm2-135m, gemma3-270m), a local transformers folder, "
               "a .gguf file, a hub id org/name, or python:module:function returning a LoadedModel "
               "(a custom or test model).", "trace"),
    OptionSpec("device", "DEVICE", parse_device, "auto", f"Device: {DEVICE_HINT}.", "trace"),
    OptionSpec("dtype", "DTYPE", parse_dtype, "float32", f"Model dtype: {', '.join(DTYPES)}.", "trace"),
    OptionSpec("samples", "N", parse_samples, 10, "Noise draws per fact (the fact set's settings: may set it too).", "trace"),
    OptionSpec("seed", "N", parse_seed, 0, "Seed of the noise draws.", "trace"),
    OptionSpec("window", "N", parse_window, 10, "Layers restored together for mlp/attn sites.", "trace"),
    OptionSpec("noise", "STD", parse_noise, None,
               "Noise standard deviation; 'auto' or unset: calibrated once per fact set as "
               "noise_scale (3) x the std of its subject-token embeddings.", "trace"),
    OptionSpec("kinds", "KINDS", parse_kinds, "hidden,mlp,attn", "Comma-separated sites to trace: hidden, mlp, attn.", "trace"),
    OptionSpec("corruption", "KIND", parse_corruption, "gaussian",
               "How the subject is corrupted: gaussian noise (ROME), uniform noise of the same std, or str "
               "(symmetric token replacement: the fact's replacements:, else the other subjects of its set).", "trace"),
    OptionSpec("metric", "METRIC", parse_metric, "prob",
               "What effects measure: prob (P(o), ROME), logprob (log P(o)) or logit_diff "
               "(logit(o) - logit(distractor); facts need distractor:).", "trace"),
    OptionSpec("method", "METHOD", parse_method, "exact",
               "exact: causal tracing; atp: attribution patching, a gradient approximation "
               "(one backward pass per fact; traces are marked approximate).", "trace"),
    OptionSpec("cache-dir", "DIR", parse_path, None,
               "Trace cache root (traces go in DIR/traces; without it, the fact-locator cache folder, "
               "$FACT_LOCATOR_CACHE).", "run"),
    OptionSpec("no-cache", "", parse_bool, False, "Neither read nor write the trace cache.", "run", flag=True),
    OptionSpec("json", "PATH", parse_path, None, "Write the run's results (every trace and outcome) as JSON here.", "run"),
    OptionSpec("html", "PATH", parse_path, None, "Write an HTML report here.", "run"),
    OptionSpec("factsets", "GLOB", parse_glob, "factsets/*.yaml",
               "Fact-set files to collect, relative to the rootdir; several globs separated by commas.", "run"),
    OptionSpec("unknown", "RULE", parse_unknown, None,
               "What to do with facts the model does not know (clean top-1 is not the target, or "
               "p_clean < min_p_clean): skip, fail or trace (unset: the fact set's unknown:, else skip).", "run"),
    OptionSpec("severed", "", parse_bool, False,
               "Also compute severed paths per traced fact: the shares of the last subject token's "
               "hidden-state effect that go through the later MLPs and attention (in the results).", "run", flag=True),
    OptionSpec("baseline", "PATH", parse_path, None,
               "A results JSON of an earlier run: each traced fact it has gets a ::baseline item "
               "(peaks must not move, TE must not drop) and each fact set an ::aggregate::baseline item.", "run"),
    OptionSpec("baseline-max-layer-shift", "K", parse_layer_shift, 2,
               "Baseline: the most layers a peak may move.", "run"),
    OptionSpec("baseline-max-ate-drop", "X", parse_non_negative, 0.05, "Baseline: the most ATE may drop.", "run"),
    OptionSpec("baseline-max-te-drop", "X", parse_non_negative, 0.1, "Baseline: the most a fact's TE may drop.", "run"),
)

DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in OPTIONS}
_BY_NAME = {spec.name: spec for spec in OPTIONS}


def _add(addoption: Callable[..., None], spec: OptionSpec, prefix: str) -> None:
    # Argparse defaults are None: "not given on the command line"; the help shows it.
    if spec.flag:
        addoption(f"--{prefix}{spec.name}", action="store_true", dest=spec.dest, default=None,
                  help=f"{spec.help} Default: %(default)r")
        return
    fallback = f"Unset: ini {spec.dest}" + ("" if spec.default is None else f", else {spec.default!r}")
    addoption(f"--{prefix}{spec.name}", dest=spec.dest, metavar=spec.metavar, type=spec.parse, default=None,
              help=f"{spec.help} {fallback}. Default: %(default)r")


def add_trace_options(addoption: Callable[..., None], prefix: str = "fl-") -> None:
    """Model and trace settings (the CLI reuses them with prefix='')."""
    for spec in OPTIONS:
        if spec.family == "trace":
            _add(addoption, spec, prefix)


def add_run_options(addoption: Callable[..., None], prefix: str = "fl-") -> None:
    """Cache, outputs, fact-set discovery and the unknown-fact rule."""
    for spec in OPTIONS:
        if spec.family == "run":
            _add(addoption, spec, prefix)


def register_ini(addini: Callable[..., None]) -> None:
    for spec in OPTIONS:
        addini(spec.dest, help=f"Like --fl-{spec.name}. {spec.help}", type="string", default=None)


@dataclass(frozen=True)
class ResolvedOptions:
    """Session-level values after command line > ini > default. `explicit` holds the values
    set on the command line or in the ini (they beat a fact set's `settings:`), `sources`
    where each value came from."""

    values: dict[str, Any]
    sources: dict[str, str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def explicit(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if self.sources[k] in ("cli", "ini")}

    def trace_overrides(self) -> dict[str, Any]:
        """Trace settings from the command line or ini, in TraceSettings' terms."""
        out: dict[str, Any] = {}
        for name, value in self.explicit.items():
            if name in ("samples", "seed", "window", "corruption", "metric"):
                out[name] = value
            elif name == "kinds":
                out["kinds"] = tuple(value.split(","))
            elif name == "noise":
                out["noise"] = value  # None = calibrate, even if a fact set gives a number
        return out

    def trace_defaults(self) -> dict[str, Any]:
        return {"samples": DEFAULTS["samples"], "seed": DEFAULTS["seed"], "window": DEFAULTS["window"],
                "kinds": tuple(DEFAULTS["kinds"].split(",")), "noise": None,
                "corruption": DEFAULTS["corruption"], "metric": DEFAULTS["metric"]}

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "sources": dict(self.sources)}


class OptionError(ValueError):
    """An ini value that does not parse; the plugin turns it into pytest.UsageError."""


def resolve_options(getoption: Callable[[str], Any], getini: Callable[[str], Any]) -> ResolvedOptions:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        cli = getoption(spec.dest)
        if cli is not None:
            values[spec.name], sources[spec.name] = cli, "cli"
            continue
        raw = getini(spec.dest)
        if raw is not None and str(raw).strip() != "":
            try:
                values[spec.name] = spec.parse(str(raw))
            except argparse.ArgumentTypeError as exc:
                raise OptionError(f"ini value {spec.dest} = {raw!r}: {exc}") from None
            sources[spec.name] = "ini"
            continue
        values[spec.name], sources[spec.name] = spec.default, "default"
    if values["noise"] == 0.0:
        values["noise"] = None  # 'auto' given explicitly: calibrate
    return ResolvedOptions(values, sources)


def python_spec_target(spec: str) -> tuple[str, str] | None:
    """`python:module:function` -> (module, function), else None."""
    if not spec.startswith(PYTHON_PREFIX):
        return None
    module, function = spec[len(PYTHON_PREFIX):].split(":")
    return module.strip(), function.strip()


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
