"""A fact: (subject, relation template, target), the unit that is traced and audited."""

from __future__ import annotations

from dataclasses import dataclass, field

from fact_locator.errors import FactError

__all__ = ["Fact"]

PLACEHOLDER = "{}"


@dataclass(frozen=True)
class Fact:
    """`relation` holds exactly one `{}` where the subject goes; `target` is the answer."""

    subject: str
    relation: str
    target: str
    id: str | None = None
    tags: tuple[str, ...] = field(default=())
    # For the logit_diff metric: the wrong answer the target is measured against.
    distractor: str | None = None
    # For symmetric token replacement: subjects to swap in (those of the same token length).
    replacements: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_fact_fields(self.subject, self.relation, self.target)
        if self.distractor is not None and (not isinstance(self.distractor, str) or not self.distractor.strip()):
            raise FactError(f"distractor must be a non-empty string, got {self.distractor!r}")

    @property
    def prompt(self) -> str:
        return self.relation.replace(PLACEHOLDER, self.subject)

    @property
    def subject_start(self) -> int:
        """Character offset of the subject in `prompt`."""
        return self.relation.index(PLACEHOLDER)

    @property
    def label(self) -> str:
        return self.id or f"{self.subject} -> {self.target}"

    @classmethod
    def from_prompt(cls, prompt: str, subject: str, target: str, id: str | None = None) -> Fact:
        """A fact from a full prompt that contains the subject (its first occurrence)."""
        if not subject.strip():
            raise FactError("the subject is empty")
        at = prompt.find(subject)
        if at < 0:
            raise FactError(f"subject {subject!r} does not occur in the prompt {prompt!r}")
        relation = prompt[:at] + PLACEHOLDER + prompt[at + len(subject):]
        if relation.count(PLACEHOLDER) != 1:
            raise FactError(f"the prompt {prompt!r} already contains '{{}}'; write it as a relation template")
        return cls(subject=subject, relation=relation, target=target, id=id)


def check_fact_fields(subject: object, relation: object, target: object) -> None:
    """Raise FactError naming the first field a user got wrong."""
    for name, value in (("subject", subject), ("relation", relation), ("target", target)):
        if not isinstance(value, str):
            raise FactError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    assert isinstance(relation, str) and isinstance(subject, str) and isinstance(target, str)
    if not subject.strip():
        raise FactError("the subject is empty")
    if not target.strip():
        raise FactError(f"the target is empty (relation {relation!r})")
    count = relation.count(PLACEHOLDER)
    if count == 0:
        raise FactError(f"relation {relation!r} has no '{{}}' where the subject goes")
    if count > 1:
        raise FactError(f"relation {relation!r} has {count} '{{}}'; it needs exactly one")
