"""The settings table (fact_locator/settings.py) is the one source of every option: the
`fact-locator` commands, pytest's --fl-* flags and ini keys, and a fact set's `settings:`."""

from __future__ import annotations

import argparse

import pytest

from fact_locator import settings as table
from fact_locator.cli import build_parser
from fact_locator.factset import SETTING_KEYS
from fact_locator.settings import CLI, FACTSET, PLUGIN, SETTINGS, SettingValueError, setting
from fact_locator.tracing.settings import TraceSettings


def plugin_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    table.add_plugin_options(parser.add_argument)
    return parser


def test_every_setting_says_what_it_does_and_what_happens_by_default():
    for spec in SETTINGS:
        assert spec.help.strip().endswith("."), spec.name
        assert spec.default_text() not in ("", "None"), spec.name


def test_the_plugin_flags_are_the_plugin_settings_with_an_fl_prefix():
    parser = plugin_parser()
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags == {f"--fl-{s.name}" for s in SETTINGS if PLUGIN in s.scopes}
    # Not given on the command line: None, so the ini key, the fact set and the default come next.
    assert all(value is None for value in vars(parser.parse_args([])).values())


def error_of(parser: argparse.ArgumentParser, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("name, value, reason", [
    ("samples", "0", "0 is too small: give an integer >= 1"),
    ("noise", "-1", "noise std must be a positive finite number, got '-1'"),
    ("metric", "rank", "unknown metric 'rank': choose one of prob, logprob, logit_diff"),
])
def test_the_cli_and_the_plugin_refuse_a_value_with_the_same_reason(name, value, reason, capsys):
    trace = ["trace", "--subject", "x", "--relation", "{} is", "--target", "y"]
    cli = error_of(build_parser(), [*trace, f"--{name}", value], capsys)
    plugin = error_of(plugin_parser(), [f"--fl-{name}", value], capsys)
    assert f"argument --{name}: {reason}" in cli
    assert plugin.endswith(f"argument --fl-{name}: {reason}")


def test_one_rule_for_the_baseline_thresholds():
    # A drop of 0 is allowed by `compare` and by --fl-baseline-max-ate-drop alike.
    assert setting("baseline-max-ate-drop").parse("0") == 0.0
    assert build_parser().parse_args(["compare", "a.json", "b.json", "--max-ate-drop", "0"]).max_ate_drop == 0.0
    with pytest.raises(SettingValueError, match="give a finite number >= 0"):
        setting("baseline-max-ate-drop").parse("-0.1")


def test_noise_auto_is_accepted_everywhere():
    assert setting("noise").parse("auto") == table.AUTO_NOISE
    args = build_parser().parse_args(["trace", "--subject", "x", "--relation", "{} is", "--target", "y", "--noise", "auto"])
    assert args.noise == table.AUTO_NOISE


def test_the_cli_defaults_come_from_the_table():
    args = build_parser().parse_args(["trace", "--subject", "x", "--relation", "{} is", "--target", "y"])
    for name in ("samples", "seed", "window", "device", "dtype", "corruption", "metric", "method", "model"):
        assert getattr(args, name) == setting(name).default, name


def test_fact_set_keys_are_the_fact_set_settings_and_trace_settings_fields():
    assert set(SETTING_KEYS) == {s.key for s in SETTINGS if FACTSET in s.scopes}
    fields = set(TraceSettings.__dataclass_fields__)
    # model and confidence (the level verdicts are decided at) are a fact set's, not a trace's
    assert {k for k in SETTING_KEYS if k not in ("model", "confidence")} <= fields
    defaults = TraceSettings()
    for key in ("samples", "seed", "window", "noise_scale", "corruption", "metric"):
        assert getattr(defaults, key) == setting(key.replace("_", "-")).default, key
    assert "confidence" not in fields  # not in the trace cache key: a level decides, it does not trace
    assert ",".join(defaults.kinds) == setting("kinds").default


def test_a_setting_is_only_generated_where_its_scope_allows():
    with pytest.raises(ValueError, match="not CLI settings"):
        table.add_cli_options(argparse.ArgumentParser().add_argument, ["factsets"])
    assert CLI not in setting("factsets").scopes and FACTSET not in setting("device").scopes
