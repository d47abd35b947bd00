"""The YAML layer of fact-set reading: a file's node tree, read safely and with line numbers.

`compose` gives the node tree (`yaml.compose` with `SafeLoader`), `NodeReader` builds plain
values from nodes the way `yaml.safe_load` does (SafeLoader's constructor; duplicate keys,
merge keys, recursive aliases and non-standard tags refused) and checks keys, strings and
tag lists. Every problem is a `FactSetError(message, path, line)` with the 1-based line.
What a fact set holds is read on top of this, in `factset.py`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from fact_locator.errors import FactSetError

__all__ = ["NodeReader", "compose", "kind_name", "line_of", "suggest"]


def compose(text: str, path: Path) -> Any:
    """The node tree of `text` (None for an empty document); tabs in indentation and invalid
    YAML are a FactSetError at their line."""
    import yaml  # lazy: keeps `import fact_locator.factset` cheap for the plugin

    _check_tabs(text, path)
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        raise FactSetError(f"invalid YAML: {problem}", path, line) from None
    except yaml.YAMLError as exc:
        raise FactSetError(f"invalid YAML: {exc}", path, 1) from None


def _check_tabs(text: str, path: Path) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise FactSetError("tab character in the indentation; YAML indents with spaces only", path, number)


def line_of(node: Any) -> int:
    """The 1-based line a node starts on."""
    return node.start_mark.line + 1


def kind_name(node: Any) -> str:
    """What a node is, as a message says it: a mapping, a list, a value."""
    name = type(node).__name__
    return {"MappingNode": "a mapping", "SequenceNode": "a list", "ScalarNode": "a value"}.get(name, name)


def suggest(key: str, allowed: tuple[str, ...]) -> str:
    """'; did you mean ...?' for a key close to an allowed one, else ''."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


class NodeReader:
    """Plain values and checked keys, strings and tags from the nodes of one file."""

    def __init__(self, path: Path):
        import yaml

        self.path = path
        self.yaml = yaml
        self.loader = yaml.SafeLoader("")
        self._stack: set[int] = set()

    def error(self, message: str, node_or_line: Any) -> FactSetError:
        line = node_or_line if isinstance(node_or_line, int) else line_of(node_or_line)
        return FactSetError(message, self.path, line)

    def value(self, node: Any) -> Any:
        """The plain Python value of a node, as yaml.safe_load builds it, with duplicate keys refused."""
        yaml = self.yaml
        if id(node) in self._stack:
            raise self.error("recursive YAML alias", node)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:merge":
                raise self.error("YAML merge keys ('<<') are not supported in fact sets", node)
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise self.error(f"cannot read the value: {getattr(exc, 'problem', None) or exc}", node) from None
        plain = {yaml.SequenceNode: "tag:yaml.org,2002:seq", yaml.MappingNode: "tag:yaml.org,2002:map"}
        if plain.get(type(node)) not in (None, node.tag):
            raise self.error(f"cannot read the value: the YAML tag {node.tag!r} is not allowed in fact sets", node)
        self._stack.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item) for item in node.value]
            if isinstance(node, yaml.MappingNode):
                return {key: self.value(v) for key, (_, v) in self.pairs(node).items()}
        finally:
            self._stack.discard(id(node))
        raise self.error(f"unsupported YAML node {type(node).__name__}", node)

    def pairs(self, node: Any, what: str = "mapping") -> dict[Any, tuple[Any, Any]]:
        """key -> (key node, value node) of a mapping node; duplicate keys are an error."""
        if not isinstance(node, self.yaml.MappingNode):
            raise self.error(f"{what} must be a mapping (key: value lines), got {kind_name(node)}", node)
        out: dict[Any, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            try:
                hash(key)
            except TypeError:
                raise self.error(f"a key in the {what} must be a plain value, got {type(key).__name__}", key_node) from None
            if key in out:
                where = "" if what == "mapping" else f" in the {what}"
                raise self.error(f"duplicate key {key!r}{where} (first on line {line_of(out[key][0])})", key_node)
            out[key] = (key_node, value_node)
        return out

    def keyed(self, node: Any, allowed: tuple[str, ...], what: str) -> dict[str, tuple[Any, Any]]:
        pairs = self.pairs(node, what)
        for key, (key_node, _) in pairs.items():
            if not isinstance(key, str):
                raise self.error(f"keys of the {what} are names, got {type(key).__name__} {key!r}", key_node)
            if key not in allowed:
                raise self.error(
                    f"unknown key {key!r} in the {what}{suggest(key, allowed)} (allowed: {', '.join(allowed)})",
                    key_node,
                )
        return pairs  # type: ignore[return-value]

    def string(self, node: Any, name: str, *, empty_ok: bool = False) -> str:
        value = self.value(node)
        if not isinstance(value, str):
            hint = f'; quote it: {name}: "{value}"' if isinstance(value, (int, float, bool)) else ""
            raise self.error(f"{name} must be a string, got {type(value).__name__} {value!r}{hint}", node)
        if not empty_ok and not value.strip():
            raise self.error(f"{name} is empty", node)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # "\ud83d" escapes: a tokenizer cannot take them
            raise self.error(
                f"{name} holds a lone surrogate {value[exc.start]!r} (a JSON-style '\\uD83D' escape?); "
                f"write the character itself or a '\\U0001F5FC'-style escape", node) from None
        return value

    def tags(self, node: Any, name: str) -> tuple[str, ...]:
        value = self.value(node)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(f"{name} must be a list of strings such as [places, landmark], got {type(value).__name__} {value!r}", node)
        items = node.value if isinstance(node, self.yaml.SequenceNode) else [node]
        for item, item_node in zip(value, items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"each of {name} must be a non-empty string, got {item!r}", item_node)
        return tuple(dict.fromkeys(value))

    def is_null(self, node: Any) -> bool:
        """A key written with no value (`expect:`)."""
        return isinstance(node, self.yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
