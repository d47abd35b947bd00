"""The expectation kinds a fact set may name: YAML name -> scope, parser and class.

Each kind's module calls `register_kind` beside its class, so adding a kind is one module
(docs/factsets.md, "Adding an expectation kind"). The reader of `expect:` / `aggregate:`
lists looks every name up here; names are listed in messages in registration order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fact_locator.expectations.outcome import SCOPES, Expectation, Scope

__all__ = ["KindEntry", "kind_names", "lookup_kind", "register_kind", "registered_kinds", "unregister_kind"]

# Keys that sit beside a kind's name in a YAML item; a kind may not take them as its name.
META_KEYS: tuple[str, ...] = ("id", "xfail", "confidence")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class KindEntry:
    """One expectation kind: its YAML name, where it may be written (`expect:` for scope
    'fact', `aggregate:` for 'aggregate'), the parser of its YAML argument and the class the
    parser builds. The parser raises `ArgumentError` for a bad argument."""

    name: str
    scope: Scope
    parser: Callable[[Any], Expectation]
    cls: type


_KINDS: dict[str, KindEntry] = {}


def register_kind(name: str, scope: Scope, parser: Callable[[Any], Expectation], cls: type) -> KindEntry:
    """Make `name` usable in fact sets. Raises ValueError for a taken or malformed name, an
    unknown scope, or a class whose `scope` says otherwise."""
    if not isinstance(name, str) or not _NAME.match(name) or name in META_KEYS:
        raise ValueError(f"an expectation kind's name is lower-case words joined by '-' (not id or xfail), got {name!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'fact' or 'aggregate', got {scope!r}")
    if name in _KINDS:
        raise ValueError(f"the expectation kind {name!r} is already registered (by {_KINDS[name].cls.__qualname__})")
    declared = getattr(cls, "scope", scope)
    if declared != scope:
        raise ValueError(f"{cls.__qualname__} has scope {declared!r} but is registered as {name!r} with scope {scope!r}")
    entry = KindEntry(name, scope, parser, cls)
    _KINDS[name] = entry
    return entry


def unregister_kind(name: str) -> None:
    """Forget a kind (tests and plugins that register one for a while)."""
    if name not in _KINDS:
        raise KeyError(f"no expectation kind {name!r} is registered")
    del _KINDS[name]


def lookup_kind(name: str) -> KindEntry | None:
    return _KINDS.get(name)


def registered_kinds(scope: Scope | None = None) -> tuple[KindEntry, ...]:
    """Every registered kind (of one scope), in registration order."""
    return tuple(e for e in _KINDS.values() if scope is None or e.scope == scope)


def kind_names(scope: Scope | None = None) -> tuple[str, ...]:
    return tuple(e.name for e in registered_kinds(scope))
