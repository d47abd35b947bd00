"""Memory of a long fact set streaming through the pytest plugin.

Runs `pytest` on a generated fact set of N facts (a tiny random Llama, `samples: 2`,
`kinds: hidden`, a fresh trace cache) in a subprocess. A conftest hook
(`pytest_fl_trace`) records the process's RSS after every trace; the script prints the RSS
at a few checkpoints, the growth per fact, and the size of one trace as JSON.

    .venv/bin/python benchmarks/memory_stream.py            # 500 facts, checkpoints 100/200/500
    .venv/bin/python benchmarks/memory_stream.py --facts 50 --checkpoints 10,50

Nothing is downloaded: the model is `tests/support/fl_tiny.py:llama` (2 layers, d_model 64).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("red blue green amber violet silver golden black white grey north south east west old new "
         "great little upper lower royal grand central river mountain lake forest castle tower bridge").split()

CONFTEST = """
import json, os, resource
import psutil

_n = 0

def pytest_fl_trace(config, fact, trace, cached):
    global _n
    _n += 1
    rss = psutil.Process().memory_info().rss
    with open(os.environ["FL_MEM_LOG"], "a") as log:
        log.write(json.dumps({"n": _n, "rss": rss, "trace_bytes": len(trace.to_json())}) + "\\n")
"""


def factset_text(n: int) -> str:
    lines = ["name: stream", "unknown: trace", "settings:", "  samples: 2", "  kinds: [hidden]", "facts:"]
    for i in range(n):
        a, b, c = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)], i
        lines += [f"  - id: f{i}", f"    subject: The {a.title()} {b.title()} {c}",
                  '    relation: "{} is located in the country of"', "    target: Italy"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=500)
    parser.add_argument("--checkpoints", default="100,200,500")
    args = parser.parse_args()
    checkpoints = [int(c) for c in args.checkpoints.split(",") if int(c) <= args.facts]
    with tempfile.TemporaryDirectory(prefix="fl-mem-") as tmp:
        work = Path(tmp)
        (work / "factsets").mkdir()
        (work / "factsets" / "stream.yaml").write_text(factset_text(args.facts))
        (work / "conftest.py").write_text(CONFTEST)
        (work / "pytest.ini").write_text("[pytest]\nfl_model = python:fl_tiny:llama\n")
        log = work / "mem.jsonl"
        env = dict(os.environ, FL_MEM_LOG=str(log), FACT_LOCATOR_CACHE=str(work / "cache"),
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "support"),
                                               os.environ.get("PYTHONPATH", "")]))
        started = time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "factsets",
                               "--fl-json", "results.json"], cwd=work, env=env, capture_output=True, text=True)
        elapsed = time.time() - started
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        results_bytes = (work / "results.json").stat().st_size
    by_n = {r["n"]: r for r in rows}
    first = rows[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}")
    print(f"{args.facts} facts in {elapsed:.0f} s (pytest subprocess, tiny llama, samples 2, kinds hidden)")
    print(f"RSS after the 1st trace: {first['rss'] / 2**20:.1f} MiB")
    for c in checkpoints:
        print(f"RSS after {c:4d} facts: {by_n[c]['rss'] / 2**20:.1f} MiB")
    last = rows[-1]
    per_fact = (last["rss"] - first["rss"]) / max(1, last["n"] - first["n"])
    print(f"growth per fact (1st -> {last['n']}th): {per_fact / 1024:.1f} KiB")
    print(f"one trace as JSON: {sum(r['trace_bytes'] for r in rows) / len(rows) / 1024:.1f} KiB on average; "
          f"results.json: {results_bytes / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
