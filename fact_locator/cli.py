"""The `fact-locator` command line: trace one fact, list models, render saved results.

Its flags come from the settings table (`settings.py`); `trace` and `sweep` get their model
and traces from a `Locator`, as the pytest plugin does (same cache, same noise, same models)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fact_locator.errors import FactLocatorError, UsageError
from fact_locator.settings import AUTO_NOISE, AUTO_SAMPLES, PYTHON_PREFIX, add_cli_options

if TYPE_CHECKING:
    from fact_locator.locator import Locator
    from fact_locator.trace_progress import TraceProgress
    from fact_locator.tracing.trace import SeveredPaths
    from fact_locator.tracing.uncertainty import EffectInterval

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _scales(text: str) -> tuple[float, ...]:
    scales = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{part!r} must be a positive number")
        scales.append(value)
    return tuple(scales)


# Settings of each command, from the settings table (fact_locator/settings.py).
TRACE_SETTINGS = ("model", "kinds", "samples", "max-samples", "confidence", "noise", "noise-calibration", "window", "seed",
                  "device", "dtype", "corruption", "metric", "target-metric", "method", "severed", "cache-dir", "no-cache",
                  "device-map", "max-memory", "offload-folder")
SWEEP_SETTINGS = ("model", "samples", "seed", "device", "dtype", "device-map", "max-memory", "offload-folder")
BASELINE_SETTINGS = ("baseline-max-layer-shift", "baseline-max-ate-drop", "baseline-max-te-drop",
                     "baseline-allow-noise-change")


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (e.g. 0.95)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from fact_locator import __version__

    parser = _Parser(prog="fact-locator", description="Locate where a language model stores its facts (causal tracing).")
    parser.add_argument("--version", action="version", version=f"fact-locator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser,
                                     help="one of these (fact-locator COMMAND --help for its options)")

    trace = commands.add_parser(
        "trace", help="trace one fact and show where its effect lies",
        description="Trace one fact and show where its effect lies. Traces go through the trace cache, as under "
                    "pytest: a fact traced before with the same model and settings is read from it (the output "
                    "says 'cached'); --no-cache traces it again.")
    trace.add_argument("--subject", required=True, help="the subject, as it appears in the prompt")
    where = trace.add_mutually_exclusive_group(required=True)
    where.add_argument("--relation", help="relation template with one {} where the subject goes")
    where.add_argument("--prompt", help="a full prompt that contains the subject")
    trace.add_argument("--target", required=True, help="the expected answer (its first token is traced)")
    trace.add_argument("--distractor",
                       help="a wrong answer, for --metric logit_diff. Default: none (only logit_diff needs one)")
    trace.add_argument("--replacement", action="append", default=[], metavar="SUBJECT",
                       help="a subject to swap in for --corruption str (repeat it; those of the same token length are used)")
    add_cli_options(trace.add_argument, TRACE_SETTINGS)
    trace.add_argument("--json", type=Path, metavar="PATH",
                       help="write the trace as JSON to PATH. Default: none (the terminal only)")
    trace.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code (off by default)")
    trace.add_argument("--no-progress", action="store_true",
                       help="no progress bar (it is drawn on stderr only when that is a terminal)")

    models = commands.add_parser("models", help="list the built-in models and what is cached")
    add_cli_options(models.add_argument, ("cache-dir",))

    report = commands.add_parser("report", help="render saved results as a self-contained HTML report")
    report.add_argument("results", type=Path, help="results JSON written by pytest --fl-json")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="HTML",
                        help="output file. Default: %(default)s")
    sweep = commands.add_parser("sweep", help="show how the total effect depends on the noise scale")
    sweep.add_argument("--factset", type=Path, metavar="YAML", help="sweep over the facts of a fact set")
    sweep.add_argument("--subject", help="one fact's subject (with --relation and --target)")
    sweep.add_argument("--relation", help="one fact's relation template")
    sweep.add_argument("--target", help="one fact's target")
    sweep.add_argument("--scales", type=_scales, default="0.5,1,2,3,4,6,10", metavar="LIST",
                       help="noise scales, in units of the subject-embedding std. Default: %(default)r")
    sweep.add_argument("--corruption", choices=("gaussian", "uniform"), default="gaussian", help="noise shape. Default: %(default)r")
    add_cli_options(sweep.add_argument, SWEEP_SETTINGS)

    compare = commands.add_parser("compare", help="compare two results (or trace) files: moved peaks, changed effects")
    compare.add_argument("before", type=Path, help="results or trace JSON of the baseline")
    compare.add_argument("after", type=Path, help="results or trace JSON to compare with it")
    add_cli_options(compare.add_argument, BASELINE_SETTINGS)
    compare.add_argument("--level", type=_level, default=0.95, metavar="P",
                         help="confidence level: a drop or a peak move is called only beyond both runs' "
                              "uncertainty at this level. Default: %(default)s")
    compare.add_argument("--check", action="store_true", help="exit 1 when the baseline rule is broken")
    compare.add_argument("--html", type=Path, metavar="PATH",
                         help="also render the comparison as a self-contained HTML page. Default: none (the terminal only)")
    merge = commands.add_parser(
        "merge", help="join the results of --fl-shard jobs and decide the aggregates over all facts",
        description="Join the --fl-json results of --fl-shard jobs of one run. Each fact set's aggregate is "
                    "recomputed over the union of its facts and its aggregate expectations decided on it; "
                    "exit 1 when one fails; exit 2 when the parts are not the shards of one run.")
    merge.add_argument("parts", type=Path, nargs="+", metavar="RESULTS", help="results JSON of each shard")
    merge.add_argument("-o", "--output", type=Path, required=True, metavar="JSON", help="the merged results file")
    merge.add_argument("--html", type=Path, metavar="PATH", help="also write an HTML report. Default: none")
    merge.add_argument("--rootdir", type=Path, default=Path("."), metavar="DIR",
                       help="the shards' pytest rootdir, where the fact-set paths of the results start. "
                            "Default: the current folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"trace": _trace, "models": _models, "report": _report, "compare": _compare, "sweep": _sweep,
                "merge": _merge}[args.command](args)
    except FactLocatorError as exc:
        print(f"fact-locator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fact-locator: interrupted", file=sys.stderr)
        return 130


def _trace(args: argparse.Namespace) -> int:
    from rich.console import Console

    from fact_locator.facts import Fact
    from fact_locator.report.trace_view import render_trace
    from fact_locator.results import write_atomic

    if args.relation is not None:
        fact = Fact(subject=args.subject, relation=args.relation, target=args.target)
    else:
        fact = Fact.from_prompt(args.prompt, args.subject, args.target)
    fact = replace(fact, distractor=args.distractor, replacements=tuple(args.replacement))
    if args.json is not None and args.json.is_dir():
        raise UsageError(f"--json {args.json}: is a directory, give a file path")
    bar = _ProgressBar(enabled=not args.no_progress)
    heard = _TraceHeard()
    locator = _locator(args, overrides=_trace_overrides(args), method=args.method, on_trace=heard,
                       on_progress=bar, trust_remote_code=args.trust_remote_code, max_samples=args.max_samples)
    stop = None
    with bar:
        trace = locator.trace(fact)
        if args.samples == AUTO_SAMPLES:  # rounds of 8, 16, ... until the TE and the peak settle
            from fact_locator.adaptive_samples import settle_trace

            stop = settle_trace(locator, fact, trace, args.confidence)
            trace = stop.trace
    console = Console()
    render_trace(trace, console)
    if stop is not None:
        console.print(f"samples auto: {stop.message} (settled: the TE interval excludes 0 and one token "
                      "category holds each kind's peak)", soft_wrap=True)
    if heard.cached:
        console.print(f"cached: read from the trace cache ({locator.cache.root}), traced earlier with the same model, "
                      "fact and settings; --no-cache traces it again", soft_wrap=True)
    if args.severed:
        trace = replace(trace, severed=_print_severed(locator.severed(fact), console))
    if args.json is not None:
        _write_output("--json", args.json, lambda: write_atomic(args.json, trace.to_json(indent=1)))
        print(f"trace written to {args.json}")
    return 0


def _trace_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The trace settings given on the command line (all of them: each has its table default)."""
    overrides = {name: getattr(args, name) for name in ("kinds", "samples", "window", "seed", "corruption", "metric",
                                                        "target_metric", "noise_calibration")}
    overrides["noise"] = None if args.noise in (None, AUTO_NOISE) else args.noise
    return overrides


def _locator(args: argparse.Namespace, overrides: dict[str, Any], **options: Any) -> Locator:
    """The command's `Locator`: its model, device and dtype, and the trace cache of
    --cache-dir (else $FACT_LOCATOR_CACHE, else the user cache folder) unless --no-cache."""
    from fact_locator.locator import Locator
    from fact_locator.models.loading import DeviceMap

    if args.model.startswith(PYTHON_PREFIX) and "" not in sys.path and str(Path.cwd()) not in sys.path:
        # As under `python -m`: a python:module:function model may be a module of the current folder.
        sys.path.insert(0, str(Path.cwd()))
    return Locator(model=args.model, device=args.device, dtype=args.dtype, overrides=overrides,
                   cache_dir=getattr(args, "cache_dir", None), use_cache=not getattr(args, "no_cache", False),
                   model_from_factset=False, load_progress=not getattr(args, "no_progress", False),
                   device_map=DeviceMap.from_options(args.device_map, args.max_memory, args.offload_folder), **options)


class _TraceHeard:
    """`Locator.on_trace`: remembers whether the trace came from the cache."""

    def __init__(self) -> None:
        self.cached = False

    def __call__(self, fact: Any, trace: Any, cached: bool) -> None:
        self.cached = cached


class _ProgressBar:
    """`Locator.on_progress` as a rich bar on stderr, shown from the first restoration batch
    (a bad prompt fails before it appears; a cached trace never shows it); off with --no-progress."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, event: TraceProgress) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("tracing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("trace", total=None)
        self._bar.update(self._task, completed=event.sites_done, total=event.sites_total)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _print_severed(severed: SeveredPaths, console: Any) -> SeveredPaths:
    """Print the severed paths at the last subject token; return them for the trace JSON."""
    layer = severed.peak_layer
    console.print()
    console.print(f"[bold]severed paths[/bold] at the last subject token {severed.token_text!r} "
                  f"(hidden-state peak: layer {layer}, IE {severed.peak_ie:.4f})", soft_wrap=True)
    for kind in ("mlp", "attn"):
        console.print(f"  later {kind} outputs held corrupted: IE {severed.curves[kind][layer]:.4f}; "
                      f"share of the effect through {kind}: {severed.shares[kind]:.1%}", soft_wrap=True)
    return severed


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fact_locator.models.sources import BUILTIN_MODELS, cached_models, default_cache_dir

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cached = {m.name: m for m in cached_models(cache_dir)}
    table = Table(title=f"models (cache: {cache_dir})")
    for column in ("name", "description", "cached", "size", "path"):
        table.add_column(column)
    for name, builtin in BUILTIN_MODELS.items():
        entry = cached.pop(name, None)
        table.add_row(name, builtin.description, "yes" if entry else "no",
                      _size(entry.size_bytes) if entry else "", str(entry.path) if entry else "")
    for name, entry in sorted(cached.items()):
        table.add_row(name, "converted GGUF", "yes", _size(entry.size_bytes), str(entry.path))
    Console().print(table)
    return 0


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _report(args: argparse.Namespace) -> int:
    from fact_locator.report.html import render_results_file

    if args.output.is_dir():
        raise UsageError(f"-o {args.output}: is a directory, give a file path")
    _write_output("-o", args.output, lambda: render_results_file(args.results, args.output))
    print(f"report written to {args.output}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from fact_locator.report.html import write_html
    from fact_locator.shard_merge import merge_shards

    merged = merge_shards(args.parts, args.rootdir)
    _write_output("-o", args.output, lambda: merged.results.save(args.output))
    if args.html is not None:
        _write_output("--html", args.html, lambda: write_html(merged.results, args.html))
    n_facts = sum(len(fs.facts) for fs in merged.results.factsets)
    print(f"merged {len(args.parts)} parts: {n_facts} facts in {len(merged.results.factsets)} fact sets -> {args.output}")
    for outcome in merged.failed:
        print(f"FAILED {outcome.nodeid}: {outcome.message.splitlines()[0]}")
    return 1 if merged.failed else 0


def _write_output(flag: str, path: Path, write: Any) -> None:
    """Run `write` (an atomic write: never a half-written file); an OS error is one line."""
    try:
        write()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from None


def _sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fact_locator.facts import Fact
    from fact_locator.tracing.sweep import noise_sweep

    if args.factset is not None:
        from fact_locator.factset import load_factset

        facts = [spec.fact for spec in load_factset(args.factset).facts]
    elif args.subject and args.relation and args.target is not None:
        facts = [Fact(args.subject, args.relation, args.target)]
    else:
        raise UsageError("sweep needs --factset FILE, or --subject, --relation and --target")
    if args.samples == AUTO_SAMPLES:
        # A sweep decides nothing at a level (it reads p_corrupt at every scale), so there is no
        # verdict for rounds to settle: a fixed number of draws says what it costs.
        raise UsageError("sweep --samples auto: a sweep decides no verdict for rounds to settle; "
                         "give a number of noise draws (e.g. --samples 32)")
    # A sweep runs no restorations and writes no trace: the Locator only loads the model.
    locator = _locator(args, overrides={"samples": args.samples, "seed": args.seed})
    points = noise_sweep(locator.tracer(locator.settings_for()), facts, args.scales, mode=args.corruption)
    table = Table(title=f"noise sweep on {args.model}: {len(facts)} fact(s), {args.corruption} noise")
    for column in ("scale", "noise std", "mean p_clean", "mean p_corrupt", "mean TE", ""):
        table.add_column(column, justify="right" if column else "left")
    for point in points:
        bar = "#" * max(0, round(20 * point.mean_te / max(point.mean_p_clean, 1e-9)))
        table.add_row(f"{point.scale:g}", f"{point.noise_std:.4g}", f"{point.mean_p_clean:.4f}",
                      f"{point.mean_p_corrupt:.4f}", f"{point.mean_te:.4f}", bar)
    Console().print(table)
    print("ROME's default is scale 3. Choose a scale where TE has levelled off but is not yet all of p_clean.")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from fact_locator.compare import BaselineRule, compare_results, load_comparable

    rule = BaselineRule(args.max_layer_shift, args.max_ate_drop, args.max_te_drop, args.level, args.allow_noise_change)
    comparison = compare_results(load_comparable(args.before), load_comparable(args.after), str(args.before),
                                 str(args.after), args.level)
    console = Console()
    broken = 0
    for fs in comparison.sets:
        # A noise change is reported once per set (in set_findings), not on every fact's row.
        set_findings = rule.set_findings(fs)
        for finding in set_findings:
            if finding.about == "noise":
                broken += finding.called
                console.print(f"[yellow]warning: {escape(fs.name)}: {escape(finding.message)}[/yellow]")
        table = Table(title=f"{fs.name}: {args.before} -> {args.after}")
        for column in ("fact", "TE before", "TE after", "peak moves", "verdict"):
            table.add_column(column)
        for fact in fs.facts:
            moves = "; ".join(
                f"{p.kind} L{p.layer_before}->L{p.layer_after}"
                + (f" {p.category_before}->{p.category_after}" if p.category_before != p.category_after else "")
                for p in fact.peaks if p.moved
            )
            findings = rule.fact_findings(fact, noise=False)
            failures = [f.message for f in findings if f.called]
            notes = [f.message for f in findings if not f.called]
            broken += bool(failures)
            verdict = "; ".join(failures + notes) if findings else "ok"
            table.add_row(escape(fact.fact_id), _with_interval(fact.te_before, fact.te_interval_before),
                          _with_interval(fact.te_after, fact.te_interval_after), moves or "-", escape(verdict))
        console.print(table)
        if fs.ate_before is not None and fs.ate_after is not None:
            console.print(f"ATE {fs.ate_before:.4f} -> {fs.ate_after:.4f} ({fs.ate_after - fs.ate_before:+.4f})")
        for finding in (f for f in set_findings if f.about != "noise"):
            broken += finding.called
            console.print(f"[red]{escape(finding.message)}[/red]" if finding.called else escape(finding.message))
    for label, keys in (("only in " + str(args.before), comparison.only_before), ("only in " + str(args.after), comparison.only_after)):
        if keys:
            console.print(f"{label}: {', '.join(keys)}")
    if args.html is not None:
        from fact_locator.report.comparison import write_comparison

        _write_output("--html", args.html, lambda: write_comparison(comparison, rule, args.html))
        console.print(f"comparison written to {args.html}")
    console.print(f"{broken} regression(s) under the baseline rule (max layer shift {rule.max_layer_shift}, "
                  f"max ATE drop {rule.max_ate_drop}, max TE drop {rule.max_te_drop}, level {rule.level:g}"
                  f"{', noise change allowed' if rule.allow_noise_change else ''})")
    return 1 if (args.check and broken) else 0


def _with_interval(value: float, interval: EffectInterval | None) -> str:
    """TE, and its interval over the noise draws where the trace kept them."""
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


if __name__ == "__main__":
    raise SystemExit(main())
