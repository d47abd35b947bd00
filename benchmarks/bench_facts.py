"""The facts the benchmarks trace: five of varied prompt length and subject position, and the
shipped fact sets' facts."""

from __future__ import annotations

from pathlib import Path

from fact_locator.facts import Fact

ROOT = Path(__file__).resolve().parents[1]

FACTS = [
    Fact("The Colosseum", "{} is located in the country of", "Italy", id="short-subject-first"),
    Fact("The Eiffel Tower", "{} is a famous landmark in the city of", "Paris", id="10-subject-first"),
    Fact("the Colosseum", "In Rome, {} is located in the country of", "Italy", id="12-subject-middle"),
    Fact("the Space Needle", "Every year many tourists visit {}, which is located in the city of", "Seattle", id="15-subject-middle"),
    Fact("Toyota", "According to the records we have, the company {} was founded in the country of", "Japan", id="long-subject-middle"),
]


def shipped_facts(n: int | None = None) -> list[Fact]:
    """The first `n` (None: all) facts of the fact sets in `factsets/`, taken from the sets in
    turn (so that a few facts already mix relations and prompt lengths)."""
    from itertools import chain, zip_longest

    from fact_locator.factset import load_factset

    sets = [load_factset(path).facts for path in sorted((ROOT / "factsets").glob("*.yaml"))]
    facts = [spec.fact for spec in chain.from_iterable(zip_longest(*sets)) if spec is not None]
    return facts if n is None else facts[:n]
