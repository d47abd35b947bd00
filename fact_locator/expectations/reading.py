"""The YAML expectation language (docs/factsets.md): items of a fact set's `expect:` and
`aggregate:` lists become `ExpectationSpec`s. Names are looked up in the registry; nothing is
evaluated. The fact-set reader (fact_locator.factset) hands over each list's items with the
composed YAML nodes, which only sharpen the line numbers of errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fact_locator.errors import FactSetError
from fact_locator.expectations.decision import check_confidence
from fact_locator.expectations.outcome import SCOPES, Expectation, with_confidence, with_id
from fact_locator.expectations.parsing import ArgumentError, show, unknown_message
from fact_locator.expectations.registry import META_KEYS, kind_names, lookup_kind

__all__ = ["ID_PATTERN", "ExpectationSpec", "parse_expectation", "read_expectations"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ExpectationSpec:
    """An expectation as written in a fact-set file: where, what text, and an optional xfail reason."""

    expectation: Expectation
    line: int
    source: str
    xfail: str | None = None

    @property
    def id(self) -> str:
        return self.expectation.id

    @property
    def scope(self) -> str:
        return self.expectation.scope


def read_expectations(items: Sequence[Any], value_of: Callable[[Any], Any], path: str | Path, scope: str,
                      what: str) -> tuple[ExpectationSpec, ...]:
    """The items (composed YAML nodes) of one `expect:` / `aggregate:` list; `value_of` builds a
    node's plain value the way the fact-set reader does. Ids must be unique within the list."""
    specs: list[ExpectationSpec] = []
    seen: dict[str, int] = {}
    for item in items:
        line = item.start_mark.line + 1
        spec = parse_expectation(value_of(item), path, line, scope, node=item)
        if spec.id in seen:
            raise FactSetError(
                f"duplicate expectation id {spec.id!r} in {what} (first on line {seen[spec.id]}); "
                f"give one of them another 'id:'",
                path,
                line,
            )
        seen[spec.id] = spec.line
        specs.append(spec)
    return tuple(specs)


def parse_expectation(node_value: Any, path: str | Path, line: int, scope: str, *, node: Any = None) -> ExpectationSpec:
    """One item of an `expect:` (scope 'fact') or `aggregate:` (scope 'aggregate') list.

    `node_value` is the item as `yaml.safe_load` gives it: a one-key mapping
    `{name: argument}`, with optional sibling keys `id:`, `xfail:` and `confidence:` (which may also sit
    inside a mapping argument). `node`, when given, is the item's composed YAML node; it
    only sharpens line numbers of errors inside the item. Raises `FactSetError(msg, path, line)`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'fact' or 'aggregate', got {scope!r}")

    def fail(message: str, *keys: str) -> FactSetError:
        if len(keys) == 2 and keys[1] in META_KEYS and _sub_line(node, keys[1:], 0):
            keys = keys[1:]  # `id:` / `xfail:` written beside the name, not inside its mapping
        return FactSetError(message, path, _sub_line(node, keys, line))

    allowed_names = kind_names(scope)  # type: ignore[arg-type]
    if isinstance(node_value, str):
        hint = f" (write '- {node_value}: ...')" if lookup_kind(node_value) is not None else ""
        raise fail(f"an expectation is a mapping such as '- te: \">= 0.3\"', got the string {node_value!r}{hint}")
    if not isinstance(node_value, dict):
        raise fail(f"an expectation is a mapping such as '- te: \">= 0.3\"', got {show(node_value)}")
    for key in node_value:
        if not isinstance(key, str):
            raise fail(f"expectation names are strings, got {show(key)}")
    names = [k for k in node_value if k not in META_KEYS]
    if not names:
        raise fail(f"no expectation named in {node_value!r} (choose from {', '.join(allowed_names)})")
    if len(names) > 1:
        raise fail(f"one expectation per list item, got {', '.join(names)}; start each with '- '", names[1])
    name = names[0]
    entry = lookup_kind(name)
    if entry is None:
        what = f"{'per-fact' if scope == 'fact' else 'aggregate'} expectation {name!r}"
        raise fail(unknown_message(what, name, list(kind_names())), name)
    if entry.scope != scope:
        if scope == "aggregate":
            raise fail(f"{name!r} is a per-fact expectation; put it under 'expect:' (aggregate: takes {', '.join(allowed_names)})", name)
        raise fail(f"{name!r} is an aggregate expectation; put it under the set's 'aggregate:' (expect: takes {', '.join(allowed_names)})", name)

    argument = node_value[name]
    meta = {k: node_value[k] for k in META_KEYS if k in node_value}
    if isinstance(argument, dict):
        argument = dict(argument)
        for key in META_KEYS:
            if key in argument:
                if key in meta:
                    raise fail(f"{key!r} is given twice (beside and inside {name})", name, key)
                meta[key] = argument.pop(key)
    try:
        expectation = entry.parser(argument)
    except ArgumentError as exc:
        raise fail(f"{name}: {exc}", *((name, exc.key) if exc.key else (name,))) from None

    if "id" in meta:
        new_id = meta["id"]
        if not isinstance(new_id, str) or not ID_PATTERN.match(new_id):
            raise fail(f"'id' must match {ID_PATTERN.pattern} (it becomes part of a pytest node id), got {new_id!r}", name, "id")
        expectation = with_id(expectation, new_id)
    if "confidence" in meta:
        if getattr(expectation, "own_level", None) is not None:
            # Under `decide` both name the level it is decided at (`own_level`): one would be ignored.
            raise fail(f"{name}: 'confidence' and its own level ('level:' or 'at 95%') both set the level it is "
                       "decided at; give one of them", name, "confidence")
        try:
            level = check_confidence(meta["confidence"], f"{name}: 'confidence'")
        except ValueError as exc:
            raise fail(str(exc), name, "confidence") from None
        expectation = with_confidence(expectation, level)
    xfail = meta.get("xfail")
    if "xfail" in meta and (not isinstance(xfail, str) or not xfail.strip()):
        raise fail(f"'xfail' takes the reason as a string, got {show(xfail)}", name, "xfail")
    return ExpectationSpec(expectation=expectation, line=line, source=_written(node) or _source(node_value), xfail=xfail)


def _source(value: Any) -> str:
    """The expectation as YAML-ish flow text, for messages (`te: '>= 0.3'`)."""
    import yaml  # lazy: only fact-set parsing needs it

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text


def _written(node: Any) -> str | None:
    """The item's text exactly as written, when it sits on one line of the file."""
    start, end = getattr(node, "start_mark", None), getattr(node, "end_mark", None)
    buffer = getattr(start, "buffer", None)
    if start is None or end is None or not isinstance(buffer, str):
        return None
    text = buffer[start.index:end.index].strip()
    return text if text and "\n" not in text else None


def _sub_line(node: Any, keys: tuple[str, ...], default: int) -> int:
    """The 1-based line of the deepest of `keys` found below a composed mapping node
    (a key is looked up at each level, descending into mapping values)."""
    line = default
    current = node
    for key in keys:
        if current is None or not hasattr(current, "value") or not isinstance(current.value, list):
            break
        found = None
        for pair in current.value:
            if isinstance(pair, tuple) and getattr(pair[0], "value", None) == key:
                found = pair
                break
        if found is None:
            break
        line = found[0].start_mark.line + 1
        current = found[1]
    return line
