"""Tokenize a fact: prompt tokens, the subject's token span and the target's tokens."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fact_locator.errors import FactError
from fact_locator.facts import Fact

__all__ = ["PreparedPrompt", "prepare_prompt", "prompt_part", "target_token_ids", "teacher_forced"]


@dataclass(frozen=True)
class PreparedPrompt:
    fact: Fact
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    subject_range: tuple[int, int]
    target_id: int
    target_token: str
    # First token of the fact's distractor (logit_diff metric), if it has one.
    distractor_id: int | None = None
    # Every token of the target as it follows the prompt (target_id is the first); empty
    # where a PreparedPrompt was built by hand.
    target_ids: tuple[int, ...] = ()
    # The target's tokens but the last, appended to the prompt in token_ids (and tokens) to
    # read the whole target teacher-forced (`teacher_forced`); empty: the metric reads the
    # first target token at the prompt's last position.
    continuation: tuple[int, ...] = ()

    @property
    def prompt_length(self) -> int:
        """The prompt's tokens: the positions a trace restores and reports."""
        return len(self.token_ids) - len(self.continuation)

    @property
    def read_positions(self) -> int:
        """The last positions whose logits the metric reads: one per target token read."""
        return len(self.continuation) + 1


def prepare_prompt(tokenizer: Any, fact: Fact, max_length: int | None = None) -> PreparedPrompt:
    """Subject span from the offset mapping (never string search on decoded tokens)."""
    if not getattr(tokenizer, "is_fast", False):
        raise FactError(f"tokenizer {type(tokenizer).__name__} gives no offset mapping (a fast tokenizer is needed)")
    prompt = fact.prompt
    enc = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    if max_length is not None and len(ids) > max_length:
        raise FactError(f"prompt {prompt!r} has {len(ids)} tokens, more than the model's context of {max_length}")
    sub_start = fact.subject_start
    sub_end = sub_start + len(fact.subject)
    # Special tokens (BOS) have empty offsets and never belong to the subject.
    subject_positions = [i for i, (a, b) in enumerate(offsets) if b > a and a < sub_end and b > sub_start]
    if not subject_positions:
        raise FactError(f"subject {fact.subject!r} covers no token of the prompt {prompt!r}")
    subject_range = (subject_positions[0], subject_positions[-1] + 1)
    target_ids = target_token_ids(tokenizer, prompt, ids, fact.target)
    target_id = target_ids[0]
    distractor_id = None if fact.distractor is None else target_token_ids(tokenizer, prompt, ids, fact.distractor)[0]
    return PreparedPrompt(
        fact=fact,
        token_ids=tuple(ids),
        tokens=tuple(tokenizer.decode([i]) for i in ids),
        subject_range=subject_range,
        target_id=target_id,
        target_token=tokenizer.decode([target_id]),
        distractor_id=distractor_id,
        target_ids=target_ids,
    )


def target_token_ids(tokenizer: Any, prompt: str, prompt_ids: list[int], target: str) -> tuple[int, ...]:
    """The target's tokens as they follow the prompt; a space is put in between unless the
    prompt ends with one or the target starts with one (`target: Italy`). Special tokens a
    tokenizer appends (an EOS) are not the target's."""
    sep = "" if (prompt[-1:].isspace() or target[:1].isspace()) else " "
    full = list(tokenizer(prompt + sep + target, add_special_tokens=True)["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    while full and full[-1] in special and len(full) > len(prompt_ids):
        full.pop()
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return tuple(int(i) for i in full[len(prompt_ids):])
    # The boundary merged into one token: fall back to the target tokenized on its own.
    alone = tokenizer(sep + target, add_special_tokens=False)["input_ids"]
    if not alone:
        raise FactError(f"target {target!r} tokenizes to nothing")
    return tuple(int(i) for i in alone)


def teacher_forced(prepared: PreparedPrompt, tokenizer: Any) -> PreparedPrompt:
    """The prompt with the target's tokens but the last appended, so that one forward gives
    P(target token t | prompt, target tokens < t) at the last `len(target_ids)` positions. A
    one-token target comes back as it is (the first-token metric then is the whole one)."""
    if len(prepared.target_ids) < 2:
        return prepared
    continuation = prepared.target_ids[:-1]
    return replace(prepared, token_ids=prepared.token_ids + continuation,
                   tokens=prepared.tokens + tuple(tokenizer.decode([i]) for i in continuation), continuation=continuation)


def prompt_part(prepared: PreparedPrompt) -> PreparedPrompt:
    """`prepared` without its teacher-forced continuation: the prompt alone."""
    if not prepared.continuation:
        return prepared
    n = prepared.prompt_length
    return replace(prepared, token_ids=prepared.token_ids[:n], tokens=prepared.tokens[:n], continuation=())
