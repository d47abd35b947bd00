"""Measure which facts a model knows and write `known: true|false` into the fact-set files.

    python factsets/measure_known.py                       # smollm2-135m, factsets/*.yaml
    python factsets/measure_known.py --check factsets/landmarks.yaml   # report, write nothing

Only the clean run per fact (the prompt's forward, plus one greedy step per further target
token): a fact is known under the fact set's `known_rule:`, by default ROME's greedy_target
(the greedy continuation of as many tokens as the target has is the target). Facts are one-line flow
mappings (`- {id: ..., known: null}`), so the flag is rewritten in place on the fact's line.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KNOWN = re.compile(r"known: (?:true|false|null)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="fact-set files (default: factsets/*.yaml)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--check", action="store_true", help="report only; do not rewrite the files")
    args = parser.parse_args(argv)

    from fact_locator.factset import load_factset
    from fact_locator.locator import Locator

    files = args.files or sorted(HERE.glob("*.yaml"))
    locator = Locator(model=args.model, device=args.device)
    started = time.perf_counter()
    locator.load()
    print(f"loaded {args.model} in {time.perf_counter() - started:.1f}s")
    total_known = total = 0
    for path in files:
        factset = load_factset(path)
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        known = 0
        for spec in factset.facts:
            check = locator.clean(spec.fact, factset, min_p_clean=0.0)
            known += check.known
            flag = "true" if check.known else "false"
            note = f"p={check.p_target:.2f}" if check.known else check.reason
            print(f"  {factset.name}/{spec.id}: {flag:5} {note}")
            line = lines[spec.line - 1]
            if not KNOWN.search(line):
                raise SystemExit(f"{path}:{spec.line}: write the fact as one line with 'known: null' to measure it")
            lines[spec.line - 1] = KNOWN.sub(f"known: {flag}", line)
        print(f"{path.name}: {known}/{len(factset.facts)} known")
        total_known += known
        total += len(factset.facts)
        if not args.check:
            path.write_text("".join(lines), encoding="utf-8")
    print(f"all: {total_known}/{total} known ({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
