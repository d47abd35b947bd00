"""The `compare` command: exit codes with --check, one line for a bad file, the HTML page.
(The comparison itself: tests/unit/test_compare.py.)"""

import json

import pytest

from fact_locator.cli import main
from fact_locator.compare import load_comparable
from fact_locator.errors import ResultsError
from tests.support.trace_factory import make_trace, run_of

BASE = make_trace()  # mlp peak: layer 0, token 2 (last subject token), TE 0.70
MOVED = make_trace(ie={"mlp": ((0.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.1, 0.0, 0.5))}, p_clean=0.5)


def test_compare_command_exits_1_on_a_regression_with_check(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_of(BASE).save(a)
    run_of(MOVED).save(b)
    assert main(["compare", str(a), str(b)]) == 0
    assert main(["compare", str(a), str(b), "--check"]) == 1
    assert main(["compare", str(a), str(a), "--check"]) == 0
    assert "mlp L0->L1" in capsys.readouterr().out


def test_a_missing_or_truncated_file_is_one_line(tmp_path, capsys):
    with pytest.raises(ResultsError, match="file not found"):
        load_comparable(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "fact-locator-results"})[:20])
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "bad.json: truncated or invalid JSON" in capsys.readouterr().err


def test_the_comparison_renders_as_a_self_contained_page(tmp_path):
    a, b, page = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.html"
    run_of(BASE).save(a)
    run_of(MOVED).save(b)
    assert main(["compare", str(a), str(b), "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count('<tr class="fact-row">') == 1
    assert "L0 last_subject &rarr; L1 last" in html and "1 regression(s)" in html
    assert "http://" not in html and "https://" not in html
    run_of(BASE, name="<b>set</b>").save(a)
    assert main(["compare", str(a), str(a), "--html", str(page)]) == 0
    assert "<b>set</b>" not in page.read_text() and "&lt;b&gt;set&lt;/b&gt;" in page.read_text()
