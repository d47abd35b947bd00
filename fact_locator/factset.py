"""Fact sets: YAML files of facts and the expectations audited on them (docs/factsets.md).

The file is read with safe-load semantics only: `yaml.compose` with `SafeLoader` gives a
node tree with line numbers, scalars are built by SafeLoader's constructor, and every
validation error is a `FactSetError(message, path, line)` with the 1-based line.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fact_locator.errors import FactError, FactSetError, UsageError
from fact_locator.expectations import ID_PATTERN, ExpectationSpec
from fact_locator.expectations.reading import read_expectations
from fact_locator.facts import Fact, check_fact_fields
from fact_locator.settings import FACTSET_KEYS, UNKNOWN_RULES

__all__ = ["FactSet", "FactSpec", "UNKNOWN_RULES", "load_factset", "parse_factset", "slugify"]

TOP_KEYS = ("name", "description", "settings", "tags", "unknown", "min_p_clean", "expect", "aggregate", "facts")
FACT_KEYS = ("id", "subject", "relation", "target", "tags", "known", "expect", "distractor", "replacements")
SETTING_KEYS = FACTSET_KEYS  # a fact set's `settings:` keys, from the settings table
_STOPWORDS = frozenset(
    "a an the is are was were be been of in on at to by for with and or as from its it his her their "
    "this that which who whom what where when".split()
)
_SLUG_WORDS = 6


@dataclass(frozen=True)
class FactSpec:
    """One fact of a set, where it was written, its own expectations and the `known:` note."""

    fact: Fact
    line: int
    expectations: tuple[ExpectationSpec, ...]
    known: bool | None

    @property
    def id(self) -> str:
        assert self.fact.id is not None
        return self.fact.id


@dataclass(frozen=True)
class FactSet:
    name: str
    description: str
    path: Path
    line: int
    settings: dict[str, Any]
    tags: tuple[str, ...]
    unknown: str
    min_p_clean: float
    facts: tuple[FactSpec, ...]
    expectations: tuple[ExpectationSpec, ...]
    aggregate_expectations: tuple[ExpectationSpec, ...]

    def fact_expectations(self, spec: FactSpec) -> tuple[ExpectationSpec, ...]:
        """Set-wide expectations, then the fact's own; where a fact's own expectation has the
        id of a set-wide one it replaces it (in the set-wide one's place)."""
        own = {e.id: e for e in spec.expectations}
        used: set[str] = set()
        merged: list[ExpectationSpec] = []
        for exp in self.expectations:
            if exp.id in used:
                continue
            merged.append(own.get(exp.id, exp))
            used.add(exp.id)
        for exp in spec.expectations:
            if exp.id not in used:
                merged.append(exp)
                used.add(exp.id)
        return tuple(merged)

    def fact(self, fact_id: str) -> FactSpec:
        for spec in self.facts:
            if spec.id == fact_id:
                return spec
        raise KeyError(f"no fact {fact_id!r} in fact set {self.name!r}")


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


def load_factset(path: str | Path) -> FactSet:
    """Read and validate one fact-set file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FactSetError(f"cannot read the fact set ({exc.strerror or exc})", path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FactSetError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", path, line) from exc
    return parse_factset(text, path)


def parse_factset(text: str, path: str | Path) -> FactSet:
    """Validate a fact set given as text; `path` is used for messages and `FactSet.path`."""
    import yaml  # lazy: keeps `import fact_locator.factset` cheap for the plugin

    path = Path(path)
    _check_tabs(text, path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        raise FactSetError(f"invalid YAML: {problem}", path, line) from None
    except yaml.YAMLError as exc:
        raise FactSetError(f"invalid YAML: {exc}", path, 1) from None
    if root is None:
        raise FactSetError("the fact set is empty: it needs at least 'facts:'", path, 1)
    return _Reader(path, yaml).factset(root)


def slugify(subject: str, relation: str) -> str:
    """A node-id-safe slug from the subject and relation words, without filler words:
    ('The Colosseum', '{} is located in the country of') -> 'colosseum-located-country'."""
    text = f"{subject} {relation.replace('{}', ' ')}"
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    kept = [w for w in words if w not in _STOPWORDS] or words
    return "-".join(kept[:_SLUG_WORDS]) or "fact"


# ----------------------------------------------------------------------------------------
# The node-tree reader
# ----------------------------------------------------------------------------------------


def _check_tabs(text: str, path: Path) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise FactSetError("tab character in the indentation; YAML indents with spaces only", path, number)


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _kind_name(node: Any) -> str:
    name = type(node).__name__
    return {"MappingNode": "a mapping", "SequenceNode": "a list", "ScalarNode": "a value"}.get(name, name)


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Reader:
    def __init__(self, path: Path, yaml: Any):
        self.path = path
        self.yaml = yaml
        self.loader = yaml.SafeLoader("")
        self._stack: set[int] = set()

    # -- generic ---------------------------------------------------------------------------
    def error(self, message: str, node_or_line: Any) -> FactSetError:
        line = node_or_line if isinstance(node_or_line, int) else _line(node_or_line)
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
            raise self.error(f"{what} must be a mapping (key: value lines), got {_kind_name(node)}", node)
        out: dict[Any, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            try:
                hash(key)
            except TypeError:
                raise self.error(f"a key in the {what} must be a plain value, got {type(key).__name__}", key_node) from None
            if key in out:
                where = "" if what == "mapping" else f" in the {what}"
                raise self.error(f"duplicate key {key!r}{where} (first on line {_line(out[key][0])})", key_node)
            out[key] = (key_node, value_node)
        return out

    def keyed(self, node: Any, allowed: tuple[str, ...], what: str) -> dict[str, tuple[Any, Any]]:
        pairs = self.pairs(node, what)
        for key, (key_node, _) in pairs.items():
            if not isinstance(key, str):
                raise self.error(f"keys of the {what} are names, got {type(key).__name__} {key!r}", key_node)
            if key not in allowed:
                raise self.error(
                    f"unknown key {key!r} in the {what}{_suggest(key, allowed)} (allowed: {', '.join(allowed)})",
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

    def replacements(self, node: Any, subject: str) -> tuple[str, ...]:
        """`replacements:` a list of other subjects for symmetric token replacement."""
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.error(
                f"replacements must be a list of subjects such as [Toyota, Honda], got {_kind_name(node)}", node)
        out: list[str] = []
        for item in node.value:
            value = self.string(item, "each of replacements")
            if value == subject:
                raise self.error(f"replacements: {value!r} is the fact's own subject", item)
            out.append(value)
        if not out:
            raise self.error("replacements is empty: list at least one other subject", node)
        return tuple(dict.fromkeys(out))

    def expectations(self, node: Any, scope: str, what: str) -> tuple[ExpectationSpec, ...]:
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.error(f"{what} must be a list of expectations ('- te: \">= 0.2\"'), got {_kind_name(node)}", node)
        return read_expectations(node.value, self.value, self.path, scope, what)  # names via the kind registry

    # -- the file ---------------------------------------------------------------------------
    def factset(self, root: Any) -> FactSet:
        if not isinstance(root, self.yaml.MappingNode):
            raise self.error(
                f"a fact set is a mapping with 'facts:' (and optional {', '.join(k for k in TOP_KEYS if k != 'facts')}), "
                f"got {_kind_name(root)}",
                root,
            )
        self.value(root)  # one safe-load pass over the whole file: tags, duplicate keys, aliases
        keys = [key.value for key, _ in root.value if isinstance(key, self.yaml.ScalarNode)]
        if keys and not any(key in TOP_KEYS or _suggest(str(key), TOP_KEYS) for key in keys):
            # Some other YAML file (a config, data): say what a fact set needs, not which key is unknown.
            raise self.error(
                f"not a fact set: it has no 'facts:' list (a fact set is a mapping with 'facts:', each fact "
                f"with subject, relation and target; this file has {', '.join(map(repr, keys))})",
                root,
            )
        top = self.keyed(root, TOP_KEYS, "fact set")

        def get(key: str) -> Any:
            """The value node of `key`; a key written with no value (`expect:`) counts as absent."""
            return None if key not in top or self._is_null(top[key][1]) else top[key][1]

        name = self.string(get("name"), "name") if get("name") is not None else self.path.stem
        if not ID_PATTERN.match(name):
            bad_node = get("name") if get("name") is not None else root
            raise self.error(f"name {name!r} must match {ID_PATTERN.pattern} (it names pytest nodes)", bad_node)
        description = self.string(get("description"), "description", empty_ok=True) if get("description") is not None else ""
        settings = self.settings(get("settings")) if get("settings") is not None else {}
        tags = self.tags(get("tags"), "tags") if get("tags") is not None else ()
        unknown = "skip"
        if get("unknown") is not None:
            unknown = self.value(get("unknown"))
            if unknown not in UNKNOWN_RULES:
                raise self.error(
                    f"unknown must be one of {', '.join(UNKNOWN_RULES)}, got {unknown!r}"
                    f"{_suggest(str(unknown), UNKNOWN_RULES)}",
                    get("unknown"),
                )
        min_p_clean = 0.0
        if get("min_p_clean") is not None:
            value = self.value(get("min_p_clean"))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
                raise self.error(f"min_p_clean must be a probability between 0 and 1, got {value!r}", get("min_p_clean"))
            min_p_clean = float(value)
        set_exps = self.expectations(get("expect"), "fact", "expect") if get("expect") is not None else ()
        agg_exps = self.expectations(get("aggregate"), "aggregate", "aggregate") if get("aggregate") is not None else ()

        facts_node = get("facts")
        if facts_node is None:
            if "facts" in top:
                raise self.error("the fact set has no facts: 'facts:' is empty", top["facts"][0])
            raise self.error("the fact set has no facts: add a 'facts:' list", root)
        if not isinstance(facts_node, self.yaml.SequenceNode):
            raise self.error(f"facts must be a list of facts ('- subject: ...'), got {_kind_name(facts_node)}", facts_node)
        if not facts_node.value:
            raise self.error("the fact set has no facts: 'facts:' is empty", facts_node)
        facts = self.facts(facts_node)
        return FactSet(
            name=name,
            description=description,
            path=self.path,
            line=_line(root),
            settings=settings,
            tags=tags,
            unknown=unknown,
            min_p_clean=min_p_clean,
            facts=facts,
            expectations=set_exps,
            aggregate_expectations=agg_exps,
        )

    def _is_null(self, node: Any) -> bool:
        return isinstance(node, self.yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def settings(self, node: Any) -> dict[str, Any]:
        from fact_locator.tracing.settings import TraceSettings, parse_kinds

        pairs = self.keyed(node, SETTING_KEYS, "settings")
        out: dict[str, Any] = {}
        for key, (_, value_node) in pairs.items():
            value = self.value(value_node)
            try:
                if key == "model":
                    value = self.string(value_node, "settings.model")
                elif key == "kinds":
                    if not isinstance(value, (str, list)) or (isinstance(value, list) and not all(isinstance(k, str) for k in value)):
                        raise UsageError(f"kinds must be a list such as [mlp, attn] or a string 'mlp,attn', got {value!r}")
                    value = parse_kinds(value)
                elif key in ("noise", "noise_scale"):
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise UsageError(f"{key} must be a positive number, got {type(value).__name__} {value!r}")
                    value = float(value)
                    TraceSettings(**{key: value})
                elif key in ("corruption", "metric"):
                    if not isinstance(value, str):
                        raise UsageError(f"{key} must be a string, got {type(value).__name__} {value!r}")
                    TraceSettings(**{key: value})
                else:  # samples, window, seed
                    TraceSettings(**{key: value})
            except UsageError as exc:
                raise self.error(f"settings.{key}: {exc}", value_node) from None
            out[key] = value
        return out

    def facts(self, node: Any) -> tuple[FactSpec, ...]:
        raw: list[tuple[Any, dict[str, tuple[Any, Any]]]] = []
        explicit: dict[str, int] = {}
        for item in node.value:
            pairs = self.keyed(item, FACT_KEYS, "fact")
            raw.append((item, pairs))
            if "id" in pairs:
                key_node, id_node = pairs["id"]
                fact_id = self.string(id_node, "id")
                if not ID_PATTERN.match(fact_id):
                    raise self.error(
                        f"fact id {fact_id!r} must match {ID_PATTERN.pattern} (letters, digits, '_', '.', '-'; "
                        f"it becomes a pytest node id)",
                        id_node,
                    )
                if fact_id in explicit:
                    raise self.error(f"duplicate fact id {fact_id!r} (first used on line {explicit[fact_id]})", id_node)
                explicit[fact_id] = _line(id_node)

        taken = set(explicit)
        specs: list[FactSpec] = []
        for item, pairs in raw:
            for required in ("subject", "relation", "target"):
                if required not in pairs:
                    present = ", ".join(str(k) for k in pairs) or "nothing"
                    raise self.error(f"the fact is missing {required!r} (it has {present})", item)
            subject = self.string(pairs["subject"][1], "subject")
            relation = self.string(pairs["relation"][1], "relation")
            target = self.string(pairs["target"][1], "target")
            try:
                check_fact_fields(subject, relation, target)
            except FactError as exc:
                field_name = "relation" if "relation" in str(exc) and "{}" in str(exc) else None
                where = pairs[field_name][1] if field_name else item
                raise self.error(str(exc), where) from None
            if "id" in pairs:
                fact_id = self.value(pairs["id"][1])
            else:
                base = slugify(subject, relation)
                fact_id, n = base, 2
                while fact_id in taken:
                    fact_id, n = f"{base}-{n}", n + 1
                taken.add(fact_id)
            pairs = {k: v for k, v in pairs.items()
                     if k not in ("tags", "expect", "known", "distractor", "replacements") or not self._is_null(v[1])}
            tags = self.tags(pairs["tags"][1], "tags") if "tags" in pairs else ()
            known = None
            if "known" in pairs:
                known = self.value(pairs["known"][1])
                if known is not None and not isinstance(known, bool):
                    raise self.error(f"known must be true or false, got {known!r}", pairs["known"][1])
            exps = self.expectations(pairs["expect"][1], "fact", "expect") if "expect" in pairs else ()
            distractor = self.string(pairs["distractor"][1], "distractor") if "distractor" in pairs else None
            replacements = self.replacements(pairs["replacements"][1], subject) if "replacements" in pairs else ()
            fact = Fact(subject=subject, relation=relation, target=target, id=fact_id, tags=tags,
                        distractor=distractor, replacements=replacements)
            specs.append(FactSpec(fact=fact, line=_line(item), expectations=exps, known=known))
        return tuple(specs)
