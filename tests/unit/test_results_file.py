"""Results and reports are written atomically, with the usual file permissions; severed
paths survive the results file, and results written before they had curves still render."""

import json
import os
import stat
from pathlib import Path

from tests.support.report_fixtures import make_results, severed_paths

from fact_locator.report import render_results_file
from fact_locator.results import RunResults, write_atomic
from fact_locator.tracing.trace import SeveredPaths


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_severed_paths_survive_the_results_file(tmp_path):
    results = make_results()
    results.factsets[0].facts[0].severed = severed_paths()
    results.save(tmp_path / "results.json")
    loaded = RunResults.load(tmp_path / "results.json")
    assert loaded.factsets[0].facts[0].severed == severed_paths()
    assert loaded.factsets[0].facts[0].severed.shares == {"mlp": 0.625, "attn": 0.125}


def test_results_written_before_severed_curves_still_load_and_render(tmp_path):
    """--fl-severed used to store shares only, as a plain dict."""
    data = make_results().to_dict()
    data["factsets"][0]["facts"][0]["severed"] = {"token": 3, "mlp_share": 0.625, "attn_share": 0.125,
                                                  "hidden_peak": {"layer": 4, "ie": 0.3}}
    (tmp_path / "old.json").write_text(json.dumps(data), encoding="utf-8")
    severed = RunResults.load(tmp_path / "old.json").factsets[0].facts[0].severed
    assert severed == SeveredPaths(token=3, peak_layer=4, peak_ie=0.3, shares={"mlp": 0.625, "attn": 0.125})
    render_results_file(tmp_path / "old.json", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "through MLP 62.5%, through attention 12.5% (hidden peak L4, IE 0.300)" in page
    assert '<svg class="severed-chart"' not in page  # no curves to draw


# A real results file, written by `pytest factsets/geo.yaml --fl-severed --fl-json` on the tiny
# llama (samples 2) before results/ became a package: two traced facts with severed paths,
# their outcomes, the set's aggregate and its ::aggregate::ate outcome.
WRITTEN_BEFORE = Path(__file__).parent / "data" / "results_written_before_the_results_package.json"


def _keeps(saved: object, old: object, where: str = "") -> None:
    """Every field of `old` is in `saved` with its value; fields added since (with their
    defaults, such as a trace noise's `source`) may join."""
    if isinstance(old, dict):
        assert isinstance(saved, dict), where
        for key, value in old.items():
            assert key in saved, f"{where}.{key} dropped"
            _keeps(saved[key], value, f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(saved, list) and len(saved) == len(old), where
        for i, (a, b) in enumerate(zip(saved, old)):
            _keeps(a, b, f"{where}[{i}]")
    else:
        assert saved == old, where


def test_a_results_file_written_before_the_results_package_loads_unchanged():
    results = RunResults.load(WRITTEN_BEFORE)
    _keeps(results.to_dict(), json.loads(WRITTEN_BEFORE.read_text(encoding="utf-8")))  # every field kept
    (geo,) = results.factsets
    assert [(f.id, f.status, f.trace is not None, f.severed is not None) for f in geo.facts] == [
        ("colosseum", "traced", True, True), ("toyota", "traced", True, True)]
    assert geo.aggregate is not None and geo.aggregate.n_facts == 2
    assert results.counts() == {"passed": 3, "failed": 0, "skipped": 0, "xfailed": 1, "xpassed": 0, "error": 0}


def test_a_results_file_written_before_the_results_package_renders(tmp_path):
    render_results_file(WRITTEN_BEFORE, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for text in ("geo", "colosseum", "toyota", "tiny-llama", "The Colosseum", '<svg class="severed-chart"'):
        assert text in page
