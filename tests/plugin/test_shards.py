"""`--fl-shard K/N` splits the facts between CI jobs; `fact-locator merge` joins their results
and decides the aggregates over every fact, as one run would."""

from __future__ import annotations

import json

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


def test_each_fact_lands_on_exactly_one_shard_and_the_split_is_stable():
    ids = [f"fact-{i}" for i in range(200)]
    shards = [shard_of("factsets/a.yaml", i, 3) for i in ids]
    assert set(shards) == {1, 2, 3}
    assert shards == [shard_of("factsets/a.yaml", i, 3) for i in reversed(ids)][::-1]  # order does not matter


def _fact_ids(results: dict) -> list[str]:
    return sorted(f["id"] for fs in results["factsets"] for f in fs["facts"])


def test_two_shards_merged_equal_one_run_aggregates_included(fl, monkeypatch, capsys):
    fl.factset("landmarks", LANDMARKS)
    first = fl.run("--fl-shard", "1/2", "--fl-json", "shard-1.json")
    second = fl.run("--fl-shard", "2/2", "--fl-json", "shard-2.json")
    assert first.ret == 0 and second.ret == 0
    first.stdout.fnmatch_lines(["*deselected*"])  # the other shard's facts and the aggregates
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
    assert agg["ate"] == pytest.approx(agg_full["ate"], abs=1e-9)
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
