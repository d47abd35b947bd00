"""Fact sets: YAML files of facts and the expectations audited on them (docs/factsets.md).

The data (`FactSet`, `FactSpec`) and what a fact set holds; the YAML itself is read with
safe-load semantics only, with line numbers, in `factset_yaml.py`. Every validation error is a
`FactSetError(message, path, line)` with the 1-based line.
"""

from __future__ import annotations

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
from fact_locator.factset_yaml import NodeReader, compose, kind_name, line_of, suggest
from fact_locator.settings import AUTO_SAMPLES, FACTSET_KEYS, KNOWN_RULES, UNKNOWN_RULES, SettingValueError, parse_confidence

__all__ = ["FactSet", "FactSpec", "UNKNOWN_RULES", "load_factset", "parse_factset", "slugify"]

TOP_KEYS = ("name", "description", "settings", "tags", "unknown", "known_rule", "min_p_clean", "expect", "aggregate", "facts")
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
    # When a fact counts as known (settings.KNOWN_RULES): ROME's greedy_target or first_token.
    known_rule: str = "greedy_target"

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
    path = Path(path)
    root = compose(text, path)
    if root is None:
        raise FactSetError("the fact set is empty: it needs at least 'facts:'", path, 1)
    return _FactSetReader(path).factset(root)


def slugify(subject: str, relation: str) -> str:
    """A node-id-safe slug from the subject and relation words, without filler words:
    ('The Colosseum', '{} is located in the country of') -> 'colosseum-located-country'."""
    text = f"{subject} {relation.replace('{}', ' ')}"
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    kept = [w for w in words if w not in _STOPWORDS] or words
    return "-".join(kept[:_SLUG_WORDS]) or "fact"


class _FactSetReader(NodeReader):
    """What a fact set holds, read from its node tree."""

    def replacements(self, node: Any, subject: str) -> tuple[str, ...]:
        """`replacements:` a list of other subjects for symmetric token replacement."""
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.error(
                f"replacements must be a list of subjects such as [Toyota, Honda], got {kind_name(node)}", node)
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
            raise self.error(f"{what} must be a list of expectations ('- te: \">= 0.2\"'), got {kind_name(node)}", node)
        return read_expectations(node.value, self.value, self.path, scope, what)  # names via the kind registry

    # -- the file ---------------------------------------------------------------------------
    def factset(self, root: Any) -> FactSet:
        if not isinstance(root, self.yaml.MappingNode):
            raise self.error(
                f"a fact set is a mapping with 'facts:' (and optional {', '.join(k for k in TOP_KEYS if k != 'facts')}), "
                f"got {kind_name(root)}",
                root,
            )
        self.value(root)  # one safe-load pass over the whole file: tags, duplicate keys, aliases
        keys = [key.value for key, _ in root.value if isinstance(key, self.yaml.ScalarNode)]
        if keys and not any(key in TOP_KEYS or suggest(str(key), TOP_KEYS) for key in keys):
            # Some other YAML file (a config, data): say what a fact set needs, not which key is unknown.
            raise self.error(
                f"not a fact set: it has no 'facts:' list (a fact set is a mapping with 'facts:', each fact "
                f"with subject, relation and target; this file has {', '.join(map(repr, keys))})",
                root,
            )
        top = self.keyed(root, TOP_KEYS, "fact set")

        def get(key: str) -> Any:
            """The value node of `key`; a key written with no value (`expect:`) counts as absent."""
            return None if key not in top or self.is_null(top[key][1]) else top[key][1]

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
                    f"{suggest(str(unknown), UNKNOWN_RULES)}",
                    get("unknown"),
                )
        known_rule = "greedy_target"
        if get("known_rule") is not None:
            known_rule = self.value(get("known_rule"))
            if known_rule not in KNOWN_RULES:
                raise self.error(
                    f"known_rule must be one of {', '.join(KNOWN_RULES)}, got {known_rule!r}"
                    f"{suggest(str(known_rule), KNOWN_RULES)}",
                    get("known_rule"),
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
            raise self.error(f"facts must be a list of facts ('- subject: ...'), got {kind_name(facts_node)}", facts_node)
        if not facts_node.value:
            raise self.error("the fact set has no facts: 'facts:' is empty", facts_node)
        facts = self.facts(facts_node)
        return FactSet(
            name=name,
            description=description,
            path=self.path,
            line=line_of(root),
            settings=settings,
            tags=tags,
            unknown=unknown,
            min_p_clean=min_p_clean,
            known_rule=str(known_rule),
            facts=facts,
            expectations=set_exps,
            aggregate_expectations=agg_exps,
        )

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
                elif key == "confidence":  # not a trace setting: the level verdicts are decided at
                    value = parse_confidence(value)
                elif key == "samples" and value == AUTO_SAMPLES:
                    pass  # adaptive rounds (adaptive_samples.py); the Locator starts them at 8
                else:  # samples, window, seed
                    TraceSettings(**{key: value})
            except (UsageError, SettingValueError) as exc:
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
                explicit[fact_id] = line_of(id_node)

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
                     if k not in ("tags", "expect", "known", "distractor", "replacements") or not self.is_null(v[1])}
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
            specs.append(FactSpec(fact=fact, line=line_of(item), expectations=exps, known=known))
        return tuple(specs)
