"""Every `--help`: `fact-locator`, each of its commands and the plugin's part of `pytest
--help` say what happens when an option is not given (never "Default: None"), and no option
goes without a help text."""

from __future__ import annotations

import argparse
import re

import pytest

from fact_locator.cli import build_parser, main

# "Default: None", also as the plugin words it ("Default: ini fl_x, else None."), however wrapped.
DEFAULT_NONE = re.compile(r"Default:[^.]*\bNone\b")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **subparsers.choices}


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(_commands()))
def test_command_help_never_says_default_none(command, capsys):
    text = _help([command] if command else [], capsys)
    assert "usage: fact-locator" in text
    assert not DEFAULT_NONE.search(text), DEFAULT_NONE.search(text)
    for action in _commands()[command]._actions:
        if action.help != argparse.SUPPRESS:
            assert (action.help or "").strip(), f"fact-locator {command}: {action.option_strings or action.dest} has no help"


def test_every_command_is_covered():
    assert set(_commands()) >= {"", "trace", "models", "report", "sweep", "compare"}


def test_pytest_help_never_says_default_none(pytester):
    result = pytester.runpytest("-p", "no:cacheprovider", "--help")
    assert result.ret == 0
    lines = result.stdout.lines
    start = lines.index("fact-locator: causal-tracing audits of where a model stores facts:")
    section = lines[start + 1 : lines.index("", start)]
    # The plugin's part only: other plugins' help is not ours to check.
    text = "\n".join(section)
    assert not DEFAULT_NONE.search(text), DEFAULT_NONE.search(text)
    # One entry per option: its flag line (the help may start there) and the indented lines after it.
    entries: list[list[str]] = []
    for line in section:
        if line.startswith("  --"):
            entries.append([line])
        else:
            entries[-1].append(line)
    assert len(entries) > 10
    for entry in entries:
        flag = entry[0].split()[0]
        words = " ".join([re.sub(r"^\s*--\S+", "", entry[0]), *entry[1:]]).strip()
        assert words, f"{flag} has no help"
        assert "Default: " in words, f"{flag} does not say its default"
    # ini keys: "fl_x (string): Like --fl-x. ...", the help on the same line or the next.
    ini = [line + lines[i + 1] for i, line in enumerate(lines) if line.startswith("  fl_")]
    assert len(ini) == len(entries) and all("Like --fl-" in key for key in ini)
