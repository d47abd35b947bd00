"""The `compare` command: exit codes with --check, one line for a bad file, the HTML page.
(The comparison itself: tests/unit/test_compare.py.)"""

import json
from dataclasses import replace

import pytest

from fact_locator.cli import main
from fact_locator.compare import load_comparable
from fact_locator.errors import ResultsError
from fact_locator.tracing.trace import NoiseInfo
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


def _with_draws(corrupt, noise=None):
    """`make_trace`'s fact with 10 noise draws of corrupted values `corrupt` (TE = 0.75 - each)."""
    import numpy as np

    from tests.support.trace_factory import make_trace_with_draws

    corrupt = np.asarray(corrupt, dtype=float)
    restored = np.zeros((2, 5, corrupt.size)) + corrupt
    restored[0, 2] += 0.4
    trace = make_trace_with_draws(corrupt, restored)
    return trace if noise is None else replace(trace, noise=noise)


def test_a_te_drop_inside_the_noise_is_not_a_regression(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # the verdict on one line of the table
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_of(_with_draws([0.04, 0.06] * 5)).save(a)
    run_of(_with_draws([0.05, 0.45] * 5)).save(b)  # TE 0.70 -> 0.50, but the second run's draws spread
    assert main(["compare", str(a), str(b), "--check"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TE dropped 0.700 -> 0.500: within noise" in out and "0 regression(s)" in out and "level 0.95" in out
    # At a level of 50% the same drop is beyond the noise.
    assert main(["compare", str(a), str(b), "--check", "--level", "0.5"]) == 1
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(b), "--level", "95"])
    assert "'95' must be between 0 and 1" in capsys.readouterr().err


def test_a_noise_change_is_warned_with_both_values_and_fails_check_unless_allowed(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_of(_with_draws([0.05] * 10, NoiseInfo(0.3545, "3 x std", "factset"))).save(a)
    run_of(_with_draws([0.05] * 10, NoiseInfo(0.1234, "3 x std", "model"))).save(b)
    assert main(["compare", str(a), str(b)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("warning: geo: noise differs: before 0.3545 (factset), after 0.1234 (model); effects are not comparable"
            in out)
    assert "1 regression(s)" in out
    assert main(["compare", str(a), str(b), "--check"]) == 1
    assert main(["compare", str(a), str(b), "--check", "--allow-noise-change"]) == 0
    assert "(accepted: allow noise change)" in " ".join(capsys.readouterr().out.split())


def test_the_page_shows_changes_within_noise_and_a_noise_change(tmp_path):
    a, b, page = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.html"
    run_of(_with_draws([0.04, 0.06] * 5, NoiseInfo(0.3545, "3 x std", "factset"))).save(a)
    run_of(_with_draws([0.05, 0.45] * 5, NoiseInfo(0.1234, "3 x std", "model"))).save(b)
    assert main(["compare", str(a), str(b), "--html", str(page)]) == 0
    html = page.read_text()
    assert "TE dropped 0.700 -&gt; 0.500: within noise" in html
    assert '<span class="fail">noise differs: before 0.3545 (factset), after 0.1234 (model)' in html
    assert "1 regression(s)" in html and "at level 0.95" in html
