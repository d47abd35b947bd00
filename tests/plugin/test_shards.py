"""`--fl-shard K/N` splits the facts between CI jobs; `fact-locator merge` joins their results
and decides the aggregates over every fact, as one run would."""

from __future__ import annotations

import json
import subprocess

import pytest

from fact_locator.cli import main
from fact_locator.plugin.sharding import shard_of

LANDMARKS = """\
name: landmarks
unknown: trace
expect:
  - te: ">= -1"
aggregate:
  - ate: ">= -1"
  - ate: {min: 0.99, id: ate-high}
facts:
""" + "".join(
    f"""  - id: {fid}
    subject: {subject}
    relation: "{{}} is located in the country of"
    target: {target}
""" for fid, subject, target in [
        ("colosseum", "The Colosseum", "Italy"), ("louvre", "The Louvre", "France"),
        ("alhambra", "The Alhambra", "Spain"), ("acropolis", "The Acropolis", "Greece"),
        ("kremlin", "The Kremlin", "Russia"), ("taj", "The Taj Mahal", "India"),
    ])
FACT_IDS = ["colosseum", "louvre", "alhambra", "acropolis", "kremlin", "taj"]


def test_each_fact_lands_on_exactly_one_shard_and_the_split_is_stable():
    ids = [f"fact-{i}" for i in range(200)]
    shards = [shard_of("factsets/a.yaml", i, 3) for i in ids]
    assert set(shards) == {1, 2, 3}
    assert shards == [shard_of("factsets/a.yaml", i, 3) for i in reversed(ids)][::-1]  # order does not matter


def _collected_facts(result: pytest.RunResult) -> set[str]:
    """Fact ids of the `--collect-only -q` node ids (factsets/x.yaml::<fact>::<expectation>)."""
    return {line.split("::")[1] for line in result.outlines if line.startswith("factsets/") and "::aggregate" not in line}


def test_three_shards_split_the_facts_whatever_the_order_of_the_file(fl):
    fl.factset("landmarks", LANDMARKS)
    shards = [_collected_facts(fl.run("--collect-only", "-q", "--fl-shard", f"{k}/3")) for k in (1, 2, 3)]
    assert set().union(*shards) == set(FACT_IDS) and sum(map(len, shards)) == len(FACT_IDS)
    assert all(shards)  # six facts spread over three shards

    head, facts = LANDMARKS.split("facts:\n")
    entries = ["  - id:" + e for e in facts.split("  - id:")[1:]]
    fl.factset("landmarks", head + "facts:\n" + "".join(reversed(entries)))
    assert [_collected_facts(fl.run("--collect-only", "-q", "--fl-shard", f"{k}/3")) for k in (1, 2, 3)] == shards

    fl.ini(fl_shard="2/3")  # the ini key selects the same shard
    assert _collected_facts(fl.run("--collect-only", "-q")) == shards[1]


def _numbers(value: object, at: str = "") -> dict[str, float]:
    """Every number of a JSON value by its path, for a comparison to a tolerance."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{at}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{at}/{i}").items()}
    return {at: float(value)} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


def _fact_ids(results: dict) -> list[str]:
    return sorted(f["id"] for fs in results["factsets"] for f in fs["facts"])


def test_two_shards_merged_equal_one_run_aggregates_included(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    first = fl.run("--fl-shard", "1/2", "--fl-json", "shard-1.json")
    second = fl.run("--fl-shard", "2/2", "--fl-json", "shard-2.json")
    assert first.ret == 0 and second.ret == 0
    first.stdout.fnmatch_lines([  # the other shard's facts and the aggregates, with the reason
        "fact-locator shard: 1/2*aggregates are left to `fact-locator merge`",
        "fact-locator shard 1/2: * items of * facts kept; deselected * items of other shards' facts and 2 "
        "aggregate items (decided over all facts by `fact-locator merge`)",
    ])
    one, two = _fact_ids(fl.results("shard-1.json")), _fact_ids(fl.results("shard-2.json"))
    assert one and two and not set(one) & set(two)
    assert all(not fs["outcomes"] for fs in fl.results("shard-1.json")["factsets"])  # no aggregate on a shard

    whole = fl.run("--fl-no-cache", "--fl-json", "whole.json")
    whole.assert_outcomes(passed=7, failed=1)  # six facts' te, ate; ate-high fails

    monkeypatch.chdir(fl.path)
    code = main(["merge", "shard-1.json", "shard-2.json", "-o", "merged.json", "--html", "merged.html"])
    out = capsys.readouterr().out
    assert code == 1, out  # ate-high fails over all facts, as in the whole run
    assert "merged 2 parts: 6 facts" in out and "ate-high" in out
    merged, full = fl.results("merged.json"), fl.results("whole.json")
    assert _fact_ids(merged) == _fact_ids(full)
    agg, agg_full = merged["factsets"][0]["aggregate"], full["factsets"][0]["aggregate"]
    assert agg["n_facts"] == agg_full["n_facts"] == 6
    assert _numbers(agg) == pytest.approx(_numbers(agg_full), abs=1e-9)  # ATE, AIE curves, intervals
    te = {f["id"]: f["trace"]["te"] for f in full["factsets"][0]["facts"]}
    assert [f["id"] for f in merged["factsets"][0]["facts"]] == FACT_IDS  # the file's order
    assert {f["id"]: f["trace"]["te"] for f in merged["factsets"][0]["facts"]} == pytest.approx(te, abs=1e-9)
    verdicts = {o["expectation"]: o["outcome"] for o in merged["factsets"][0]["outcomes"]}
    assert verdicts == {"ate": "passed", "ate-high": "failed"}
    assert (fl.path / "merged.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("value", ["0/2", "3/2", "x", "1-2"])
def test_a_bad_shard_is_one_usage_error(fl, value):
    fl.factset("landmarks", LANDMARKS)
    result = fl.run("--fl-shard", value)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*--fl-shard*{value}*K/N*"])


def test_merge_refuses_parts_of_different_settings(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    assert fl.run("--fl-shard", "1/2", "--fl-json", "a.json").ret == 0
    assert fl.run("--fl-shard", "2/2", "--fl-samples", "3", "--fl-json", "b.json").ret == 0
    monkeypatch.chdir(fl.path)
    assert main(["merge", "a.json", "b.json", "-o", "m.json"]) == 2
    err = capsys.readouterr().err
    assert "cannot merge" in err and "samples" in err and len(err.strip().splitlines()) == 1
    assert not (fl.path / "m.json").exists()
    json.dumps(err)  # one plain line


def _merge_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `fact-locator merge`; it must refuse with exit 2 and one line."""
    assert main(["merge", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_merge_refuses_parts_that_are_not_the_shards_of_one_run(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    for shard, name in [("1/2", "a.json"), ("2/2", "b.json"), ("1/3", "c.json")]:
        assert fl.run("--fl-shard", shard, "--fl-json", name).ret == 0
    assert fl.run("--fl-json", "whole.json").ret == 1  # ate-high fails
    monkeypatch.chdir(fl.path)

    assert "shard 2/2 missing" in _merge_error(["a.json", "-o", "m.json"], capsys)
    assert "shard 1/2 given twice" in _merge_error(["a.json", "a.json", "b.json", "-o", "m.json"], capsys)
    assert "1/3 is not of the same N as a.json's 1/2" in _merge_error(["a.json", "b.json", "c.json", "-o", "m.json"],
                                                                     capsys)
    assert "whole.json: not a shard" in _merge_error(["a.json", "b.json", "whole.json", "-o", "m.json"], capsys)
    # Results of whole runs merge (e.g. of different fact sets), but one fact in two is an error, not a dedup.
    err = _merge_error(["whole.json", "whole.json", "-o", "m.json"], capsys)
    assert "factsets/landmarks.yaml: fact 'colosseum' is in whole.json and in whole.json" in err
    assert "fact set not found" in _merge_error(["a.json", "b.json", "-o", "m.json", "--rootdir", "elsewhere"], capsys)
    assert not (fl.path / "m.json").exists()

    monkeypatch.chdir(fl.path / "factsets")
    assert main(["merge", "../a.json", "../b.json", "-o", "../m.json", "--rootdir", ".."]) == 1  # ate-high fails
    assert (fl.path / "m.json").exists()


def test_a_fact_missing_from_every_part_is_refused(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    assert fl.run("--fl-shard", "1/2", "--fl-json", "a.json").ret == 0
    assert fl.run("--fl-shard", "2/2", "--fl-json", "b.json", "-k", "not louvre").ret == 0  # louvre is on 2/2
    monkeypatch.chdir(fl.path)
    err = _merge_error(["a.json", "b.json", "-o", "m.json"], capsys)
    assert "factsets/landmarks.yaml: fact 'louvre' is in no part" in err


def test_a_shard_that_draws_no_fact_passes_and_still_writes_its_part(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    n = 40  # more shards than facts: some draw none
    empty = next(k for k in range(1, n + 1)
                 if all(shard_of("factsets/landmarks.yaml", fid, n) != k for fid in FACT_IDS))
    result = fl.run("--fl-shard", f"{empty}/{n}", "--fl-json", "empty.json")
    assert result.ret == 0
    assert fl.results("empty.json")["factsets"] == []


def test_the_shards_trace_caches_joined_with_cp_rn_serve_a_whole_run(fl):
    fl.factset("landmarks", LANDMARKS)
    assert fl.run("--fl-shard", "1/2", "--fl-cache-dir", "cache-1").ret == 0
    assert fl.run("--fl-shard", "2/2", "--fl-cache-dir", "cache-2").ret == 0
    assert sorted(fl.traced()) == sorted(FACT_IDS)
    for part in ("cache-1", "cache-2"):  # as docs/scaling.md says
        subprocess.run(["cp", "-rn", f"{part}/.", "joined"], cwd=fl.path, check=True)
    whole = fl.run("--fl-cache-dir", "joined")
    whole.assert_outcomes(passed=7, failed=1)
    assert sorted(fl.traced()) == sorted(FACT_IDS)  # nothing traced again


def test_a_shard_under_xdist_traces_the_same_facts(fl):
    pytest.importorskip("xdist")
    fl.factset("landmarks", LANDMARKS)
    result = fl.run_subprocess("-n", "2", "--fl-shard", "1/2", "--fl-json", "shard-1.json", timeout=180)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["fact-locator shard: 1/2*"])
    mine = sorted(f for f in FACT_IDS if shard_of("factsets/landmarks.yaml", f, 2) == 1)
    assert _fact_ids(fl.results("shard-1.json")) == mine
    assert sorted(fl.traced()) == mine


def test_merge_decides_aggregates_at_the_runs_level_and_counts_undecided_as_the_run_did(fl, monkeypatch, capsys):
    monkeypatch.chdir(fl.path)
    fl.factset("landmarks", LANDMARKS)
    for k in (1, 2):
        assert fl.run("--fl-shard", f"{k}/2", "--fl-json", f"shard-{k}.json").ret == 0
    main(["merge", "shard-1.json", "shard-2.json", "-o", "merged.json"])
    ate = fl.results("merged.json")["factsets"][0]["aggregate"]["ate"]
    capsys.readouterr()

    # A threshold at the measured ATE itself: its interval over facts and draws straddles it.
    fl.factset("landmarks", LANDMARKS.replace('ate: ">= -1"', f'ate: ">= {ate!r}"'))
    whole = fl.run("--fl-json", "whole.json")
    whole_verdicts = {o["expectation"]: (o["outcome"], o["counted_as"]) for o in fl.results("whole.json")["factsets"][0]["outcomes"]}
    assert whole_verdicts["ate"] == ("undecided", "failed")
    for k in (1, 2):
        fl.run("--fl-shard", f"{k}/2", "--fl-json", f"shard-{k}.json")
    assert main(["merge", "shard-1.json", "shard-2.json", "-o", "merged.json"]) == 1
    merged = {o["expectation"]: o for o in fl.results("merged.json")["factsets"][0]["outcomes"]}
    assert (merged["ate"]["outcome"], merged["ate"]["counted_as"]) == whole_verdicts["ate"]
    assert "undecided at 95%" in merged["ate"]["message"]

    # The shards' --fl-undecided skip: the merge counts it skipped, as the whole run would.
    for k in (1, 2):
        fl.run("--fl-shard", f"{k}/2", "--fl-undecided", "skip", "--fl-json", f"shard-{k}.json")
    main(["merge", "shard-1.json", "shard-2.json", "-o", "merged.json"])
    merged = {o["expectation"]: o for o in fl.results("merged.json")["factsets"][0]["outcomes"]}
    assert (merged["ate"]["outcome"], merged["ate"]["counted_as"]) == ("undecided", "skipped")
    assert whole.ret == 1
