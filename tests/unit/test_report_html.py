"""The HTML report (fact_locator.report.html), on fake results: structure, escaping, no other
host, size per fact, determinism, errors of render_results_file, and a headless-Chromium run
of its inline JS."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tests.support.report_fixtures import EVIL, N_TRACED, SUMMARY_ROWS, evil_results, make_results, single_fact_results

from fact_locator.errors import ResultsError
from fact_locator.report import render_html, render_results_file, write_html
from fact_locator.report.html import TEMPLATES

PINNED = "2025-01-01T12:00:00+00:00"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Balance(HTMLParser):
    """Checks that every element is closed in order (SVG self-closing tags allowed)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: dict[str, int] = {}
        self.classes: list[tuple[str, str]] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.starts[tag] = self.starts.get(tag, 0) + 1
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "class":
                self.classes.append((tag, value or ""))
        if tag not in VOID:
            self.stack.append(tag)
        self._in_script = tag == "script"

    def handle_startendtag(self, tag, attrs):
        self.starts[tag] = self.starts.get(tag, 0) + 1
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "class":
                self.classes.append((tag, value or ""))

    def handle_endtag(self, tag):
        self._in_script = False
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()

    def handle_data(self, data):
        if self._in_script:
            self.script_text.append(data)


def parse(html: str) -> Balance:
    parser = Balance()
    parser.feed(html)
    parser.close()
    return parser


def svgs(html: str, cls: str) -> list[str]:
    return re.findall(rf'<svg class="{cls}[ "].*?</svg>', html, flags=re.S)


def as_xml(fragment: str) -> ET.Element:
    # heatmap cells carry an unquoted one-letter class (valid HTML, smaller); quote it for XML
    return ET.fromstring(re.sub(r"class=([a-p])>", r'class="\1">', fragment))


@pytest.fixture(scope="module")
def html() -> str:
    return render_html(make_results(), rendered_at=PINNED)


def test_balanced_and_well_formed(html):
    parser = parse(html)
    assert parser.errors == []
    assert parser.stack == []
    assert html.startswith("<!DOCTYPE html>")
    for fragment in svgs(html, "heatmap") + svgs(html, "aie-chart"):
        root = as_xml(fragment)
        assert root.tag == "svg"


def test_no_other_host(html):
    assert not re.search(r"https?:", html, flags=re.I)
    assert not re.search(r"(?<![:\w])//\w", html)  # protocol-relative URL (and no // comments)
    for tag, name, value in parse(html).attrs:
        if name in ("href", "src", "action", "xlink:href"):
            assert value.startswith("#"), (tag, name, value)
    assert "@import" not in html and "<link" not in html
    assert re.findall(r"url\(([^)]*)\)", html) == [f"#grad-{p}" for p in ("purple", "green", "red", "blue", "orange", "grey")]


def test_header_contents(html):
    for text in ("smollm2-135m", "LlamaForCausalLM", ">30<", ">abc<", "samples", "window", "transformers", "5.0.0",
                 "2025-01-01T10:00:00+00:00", PINNED, "2 failed", "1 error", "4 passed", "1 xfailed", "1 skipped"):
        assert text in html, text


def test_heatmap_and_row_counts(html):
    parser = parse(html)
    heatmaps = [c for t, c in parser.classes if t == "svg" and c.split()[0] == "heatmap"]
    assert len(heatmaps) == N_TRACED * 3
    assert len(svgs(html, "heatmap")) == N_TRACED * 3
    rows = re.findall(r'<tr data-i="(\d+)" data-outcome="(\w+)">', html)
    assert len(rows) == SUMMARY_ROWS
    assert [int(i) for i, _ in rows] == list(range(SUMMARY_ROWS))
    # failing first, then error, ..., skipped last
    order = ["failed", "error", "xpassed", "passed", "xfailed", "skipped", "traced"]
    ranks = [order.index(o) for _, o in rows]
    assert ranks == sorted(ranks) and rows[0][1] == "failed"
    # the failing audits' messages are in the summary table
    summary = html[html.index('<table id="summary">') : html.index("</table>", html.index('<table id="summary">'))]
    assert "expected the last subject token" in summary and "expected &gt;= L10" in summary
    # the Figure-2 charts: one per kind per fact set with an aggregate, each with a legend
    charts = svgs(html, "aie-chart")
    assert len(charts) == 2 * 3
    assert all("last subject" in c and "<polyline" in c for c in charts)
    # filter buttons and search box
    assert 'data-filter="failed"' in html and 'id="search"' in html


def test_heatmap_cells_tokens_and_legend(html):
    fragment = svgs(html, "heatmap")[0]
    root = as_xml(fragment)
    cells = [el for el in root.iter("rect") if el.find("title") is not None]
    assert len(cells) == 30 * 10  # the Colosseum: 30 layers x 10 tokens
    assert all(re.fullmatch(r"-?\d+(\.\d{3})?", el.find("title").text) for el in cells)
    assert "0.554" in {el.find("title").text for el in cells}  # the peak's exact value
    texts = [el.text for el in root.iter("text")]
    assert "*'seum'" in texts and "' located'" in texts  # subject tokens marked
    assert [el.get("class") for el in root.iter("text") if el.text == "*'seum'"] == ["s"]  # and bold
    assert any(el.get("class") == "bar" for el in root.iter("rect"))  # the colour scale
    assert "IE hidden" in texts and "0.554" in texts  # legend: kind and scale maximum
    assert 'class="pk"' in fragment  # peak outlined


def test_fact_details(html):
    for text in ("The Space Needle", " Seattle", "0.750", "0.050", "0.700", "The Colosseum is located in the country of",
                 "Not traced (error)", "TraceError: NaN in the corrupted run", "not &#39; Quux&#39;"):
        assert text in html, text
    assert html.count('<details class="fact"') == 6


def test_escaping_everywhere():
    html = render_html(evil_results(), rendered_at=PINNED)
    assert "<script>alert" not in html
    assert "</svg> \"" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;double&#34; &#39;single&#39; &amp; &lt;/svg&gt;" in html
    parser = parse(html)
    assert parser.errors == [] and parser.stack == []
    assert parser.starts["script"] == 2
    # the tojson data: no raw markup, and it decodes back to the original text
    data_text = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, flags=re.S).group(1)
    assert "<" not in data_text and ">" not in data_text and "'" not in data_text
    data = json.loads(data_text)
    assert any(EVIL.lower() in row["text"] for row in data["rows"])
    # the evil token in the heatmap is escaped; the SVG still parses
    for fragment in svgs(html, "heatmap"):
        as_xml(fragment)
    assert "*&#39;&lt;script&gt;&#39;" in html or "*'&lt;script&gt;'" in html
    assert not re.search(r"https?:", html)


def test_deterministic():
    first = render_html(make_results(), rendered_at=PINNED)
    second = render_html(make_results(), rendered_at=PINNED)
    assert first == second
    other_time = render_html(make_results(), rendered_at="2030-01-01T00:00:00+00:00")
    assert other_time.replace("2030-01-01T00:00:00+00:00", PINNED) == first
    assert re.search(r"\d{4}-\d\d-\d\dT", render_html(make_results()))  # a default render time


@pytest.mark.parametrize("dense", [False, True], ids=["peaked", "dense-worst-case"])
def test_size_per_fact(dense):
    """A 30-layer x 12-token x 3-kind fact (1080 cells) adds no more than 50 KB."""
    one = len(render_html(single_fact_results(n_facts=1, dense=dense), rendered_at=PINNED).encode())
    five = len(render_html(single_fact_results(n_facts=5, dense=dense), rendered_at=PINNED).encode())
    per_fact = (five - one) / 4
    assert per_fact <= 50_000, per_fact
    assert one <= 50_000 + 30_000  # one fact plus the page's fixed part (CSS, JS, header, charts)


def test_write_html_atomic(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "report.html"
    write_html(make_results(), out)
    text = out.read_text(encoding="utf-8")
    assert "data-ready" in text
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]

    import fact_locator.report.html as module

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(module, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_html(make_results(), out)
    assert out.read_text(encoding="utf-8") == text
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_render_results_file(tmp_path):
    results_path = tmp_path / "results.json"
    make_results().save(results_path)
    out = tmp_path / "report.html"
    render_results_file(results_path, out)
    assert out.read_text(encoding="utf-8").count('<svg class="heatmap') == N_TRACED * 3


def _assert_results_error(results_path: Path, out: Path, existing: str | None):
    with pytest.raises(ResultsError) as info:
        render_results_file(results_path, out)
    message = str(info.value)
    assert str(results_path) in message and "\n" not in message
    if existing is None:
        assert not out.exists()
    else:
        assert out.read_text(encoding="utf-8") == existing
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    return message


@pytest.mark.parametrize("existing", [None, "old report"], ids=["no-output", "output-kept"])
def test_render_results_file_errors(tmp_path, existing):
    out = tmp_path / "report.html"
    if existing is not None:
        out.write_text(existing, encoding="utf-8")
    assert "not found" in _assert_results_error(tmp_path / "missing.json", out, existing)

    full = tmp_path / "full.json"
    make_results().save(full)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(full.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    assert "truncated" in _assert_results_error(truncated, out, existing)

    other = tmp_path / "other-version.json"
    data = json.loads(full.read_text(encoding="utf-8"))
    data["version"] = 99
    other.write_text(json.dumps(data), encoding="utf-8")
    assert "version 99" in _assert_results_error(other, out, existing)


def test_templates_shipped_in_package():
    assert (TEMPLATES / "report.html.j2").is_file()
    assert TEMPLATES.parent.name == "report"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium); CI installs it")
@pytest.mark.parametrize(
    "fragment, shown",
    [("", SUMMARY_ROWS), ("#outcome=failed", 2), ("#q=eiffel", 1), ("#outcome=passed&q=colosseum", 2)],
    ids=["all", "failed", "search", "both"],
)
def test_chromium_runs_inline_js(tmp_path, fragment, shown):
    out = tmp_path / "report.html"
    write_html(make_results(), out)
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.resolve().as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert proc.returncode == 0 and "<body" in dom, proc.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body))
    assert attrs.get("data-ready") == "1", body
    assert attrs["data-heatmaps"] == attrs["data-heatmaps-expected"] == str(N_TRACED * 3)
    assert attrs["data-rows"] == str(SUMMARY_ROWS)
    assert attrs["data-shown"] == str(shown)
    assert len(re.findall(r'<tr data-i="\d+"[^>]* hidden=""', dom)) == SUMMARY_ROWS - shown
    assert len(re.findall(r'<svg class="heatmap', dom)) == N_TRACED * 3


def odd_results():
    """NaN and negative IEs, an extra kind with markup in its name, a trace with no kinds,
    an all-zero grid, a NaN aggregate curve, an empty fact set."""
    from dataclasses import replace

    from tests.support.report_fixtures import FactSetResult

    results = make_results()
    facts = results.factsets[0].facts
    trace = facts[0].trace
    grid = [list(row) for row in trace.ie["hidden"]]
    grid[3][2], grid[4][4] = float("nan"), -0.3
    facts[0].trace = replace(trace, ie={**trace.ie, "hidden": tuple(map(tuple, grid)), "odd<kind>": trace.ie["mlp"]})
    facts[1].trace = replace(facts[1].trace, ie={})
    facts[2].trace = replace(facts[2].trace, ie={"mlp": tuple(tuple(0.0 for _ in row) for row in facts[2].trace.ie["mlp"])})
    agg = results.factsets[0].aggregate
    curves = dict(agg.aie["hidden"])
    curves["last"] = tuple(float("nan") for _ in curves["last"])
    results.factsets[0].aggregate = replace(agg, aie={**agg.aie, "hidden": curves})
    results.factsets.append(FactSetResult(name="empty", path="facts/empty.yaml"))
    return results


def test_odd_values_render():
    from fact_locator.report import write_summary

    html = render_html(odd_results(), rendered_at=PINNED)
    parser = parse(html)
    assert parser.errors == [] and parser.stack == []
    assert "odd&lt;kind&gt;" in html and "odd<kind>" not in html
    assert "<title>nan</title>" in html and "<title>-0.300</title>" in html
    assert "nan," not in html and ",nan" not in html  # no NaN in polyline points
    assert len(svgs(html, "heatmap")) == 4 + 0 + 1 + 3
    for fragment in svgs(html, "heatmap") + svgs(html, "aie-chart"):
        as_xml(fragment)
    text = write_summary(odd_results(), color=False, width=100)
    assert "fact set empty" in text
    assert "odd<kind>" in text


def test_method_badge_interval_and_severed_shown():
    from dataclasses import replace

    from tests.support.report_fixtures import colosseum, eiffel, severed_paths, space_needle

    from fact_locator.aggregate import aggregate
    from fact_locator.report.terminal import write_summary

    results = make_results()
    plain = render_html(results, rendered_at="x")
    assert "approximate (AtP)" not in plain and "at 95%" not in plain and "severed (last subject token)" not in plain
    assert '<td class="mono">exact</td>' in plain and '<td class="mono">gaussian</td>' in plain

    traces = [colosseum(), space_needle(), eiffel()]
    atp = [replace(t, settings={**t.settings, "method": "atp (approximate: gradient attribution patching)"}) for t in traces]
    landmarks = results.factsets[0]
    for fact, trace in zip(landmarks.facts, atp):
        fact.trace = trace
    landmarks.facts[0].severed = severed_paths()
    landmarks.aggregate = aggregate(atp, intervals=True)
    results.settings.update(metric="logprob", corruption="uniform")
    page = render_html(results, rendered_at="x")
    iv = landmarks.aggregate.intervals["ate"]
    assert f"[{100 * iv['low']:.1f}%, {100 * iv['high']:.1f}%] at 95%" in page
    assert page.count("approximate (AtP)") == 1 + 3  # the header and each approximate trace
    assert '<td class="mono">logprob</td>' in page and '<td class="mono">uniform</td>' in page
    assert "through MLP 62.5%, through attention 12.5% (hidden peak L4, IE 0.300)" in page
    assert len(svgs(page, "severed-chart")) == 1 and not svgs(plain, "severed-chart")

    text = write_summary(results, color=False, width=200)
    assert "metric logprob, corruption uniform, method atp [approximate (AtP)]" in text
    assert f"[{100 * iv['low']:.1f}%, {100 * iv['high']:.1f}%] at 95%" in text
    assert "severed colosseum: through MLP 62.5%" in text


def _between(html: str, start: str, end: str) -> str:
    i = html.index(start)
    return html[i : html.index(end, i)]


def test_the_report_opens_on_the_verdicts():
    html = render_html(make_results(), rendered_at=PINNED)
    body = html[html.index("<body") :]
    assert body.index('<table id="summary">') == body.index("<table")  # no table before the summary
    assert body.index('<table id="summary">') < body.index('<table class="key-settings">') < body.index("<details")


def test_model_and_settings_are_a_short_readable_table():
    from tests.support.report_fixtures import plugin_settings

    results = make_results()
    results.settings = plugin_settings()
    html = render_html(results, rendered_at=PINNED)
    table = _between(html, '<table class="key-settings">', "</table>")
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td[^>]*>(.*?)</td></tr>', table)
    assert [name for name, _ in rows] == ["model", "architecture", "fingerprint", "method", "metric", "corruption",
                                          "samples", "noise", "window", "kinds", "seed"]
    values = dict(rows)
    assert values["model"] == "smollm2-135m" and values["architecture"] == "LlamaForCausalLM, 30 layers, float32"
    assert values["fingerprint"] == "abc" and values["kinds"] == "hidden, mlp, attn" and values["window"] == "10"
    # fact sets traced with different values show one line each; the noise says how it was calibrated
    assert values["samples"] == "landmarks: 10<br>materials: 4"
    assert values["noise"] == ("landmarks: 0.12 (3 x std of subject-token embeddings (fact set &#39;landmarks&#39;) = 3 x 0.04)<br>"
                               "materials: 0.09 (3 x std of subject-token embeddings (fact set &#39;materials&#39;) = 3 x 0.03)")
    # the rest is folded away, readable: where each value came from is a column, not a JSON dump
    folded = _between(html, '<details class="all-settings">', "</details>")
    assert "<details class=\"all-settings\" open" not in html
    assert not re.search(r"[{}\[\]]", folded.replace("{{", "")), "raw JSON in the folded settings"
    assert "<tr><td>samples</td><td class=\"mono\">10</td><td class=\"muted\">ini</td></tr>" in folded
    assert "<th colspan=\"3\">fact set facts/materials.yaml</th>" in folded
    assert "<tr><td>samples</td><td class=\"mono\">4</td><td class=\"muted\">factset</td></tr>" in folded
    assert "<tr><td>traced</td><td class=\"mono\">4</td></tr>" in folded  # the run's counts
    assert "<tr><td>transformers</td><td class=\"mono\">5.0.0</td></tr>" in folded


def test_settings_without_per_factset_values_come_from_the_run_and_the_traces():
    html = render_html(make_results(), rendered_at=PINNED)  # results as older runs wrote them
    values = dict(re.findall(r'<tr><th scope="row">([^<]+)</th><td[^>]*>(.*?)</td></tr>',
                             _between(html, '<table class="key-settings">', "</table>")))
    assert values["samples"] == "10" and values["seed"] == "0" and values["noise"] == "0.1 (given)"


def test_only_failures_and_errors_are_styled_as_errors():
    from tests.support.report_fixtures import audit

    results = make_results()
    colosseum = results.factsets[0].facts[0]
    colosseum.outcomes.append(audit("colosseum", "hidden-peak", "passed", "hidden peak at L15, as expected"))
    results.factsets[1].outcomes.append(audit("materials", "ate", "passed"))
    html = render_html(results, rendered_at=PINNED)
    css = _between(html, "<style>", "</style>")
    red = {sel for rule in re.findall(r"([^{}]+)\{[^}]*color:#b71c1c[^}]*\}", css) for sel in rule.split(",")}
    assert red == {".msg-failed", ".msg-error"}
    assert re.search(r"\.msg\{[^}]*\}", css) and "color" not in re.search(r"\.msg\{([^}]*)\}", css).group(1)
    assert '<p class="msg msg-passed">hidden peak at L15, as expected</p>' in html
    assert '<p class="msg msg-failed">failed: mlp-peak: mlp peak at L5' in html
    # the aggregate row of a set whose audits all passed, and a fact the model does not know
    assert '<p class="msg msg-passed">1 passed</p>' in html
    assert re.search(r'<p class="msg msg-skipped">unknown: top-1 is', html)
    classes = re.findall(r'<p class="msg (msg-\w+)">', html)
    assert set(classes) >= {"msg-passed", "msg-failed", "msg-error", "msg-skipped", "msg-xfailed"}


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium); CI installs it")
def test_chromium_shows_the_summary_as_the_first_table(tmp_path):
    out = tmp_path / "report.html"
    write_html(make_results(), out)
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0 and "<body" in dom, proc.stderr[-2000:]
    tables = re.findall(r"<table([^>]*)>", dom[dom.index("<body") :])
    assert tables[0] == ' id="summary"' and tables[1] == ' class="key-settings"'
    assert re.search(r'<details class="all-settings">\s*<summary>', dom)  # folded: no open attribute


def test_every_section_is_registered_once_with_its_partial_shipped():
    from fact_locator.report.sections import SECTIONS

    names = [s.name for s in SECTIONS]
    assert len(names) == len(set(names))
    assert names[0] == "summary"  # the page opens on the verdicts
    for section in SECTIONS:
        assert (TEMPLATES / section.template).is_file(), section.template


def _with_partial(monkeypatch, name: str, source: str) -> None:
    """Let the report's Jinja environment find one more partial, for this test only."""
    from jinja2 import ChoiceLoader, DictLoader

    from fact_locator.report.html import _environment

    env = _environment()
    # Jinja caches templates per loader, so the report's own templates are untouched after the test
    monkeypatch.setattr(env, "loader", ChoiceLoader([DictLoader({name: source}), env.loader]))


def test_a_section_is_a_view_model_a_partial_and_one_line(monkeypatch):
    from dataclasses import dataclass

    import fact_locator.report.html as module
    from fact_locator.report.sections import SECTIONS, ReportRun, Section

    @dataclass(frozen=True)
    class CountView:
        n_facts: int
        note: str

        def script_data(self) -> dict:
            return {"n_facts": self.n_facts}

    def build_count(run: ReportRun) -> CountView:
        return CountView(sum(len(fs.facts) for fs in run.results.factsets), EVIL)

    _with_partial(monkeypatch, "sections/count.html.j2", '<h2 id="count-title">Count</h2>\n<p>{{ view.n_facts }} {{ view.note }}</p>\n')
    monkeypatch.setattr(module, "SECTIONS", [*SECTIONS, Section("count", build_count, "sections/count.html.j2")])
    html = render_html(make_results(), rendered_at=PINNED)
    main = html[html.index("<main>") : html.index("</main>")]
    assert main.index('<h2 id="summary-title">') < main.index('<h2 id="settings-title">') < main.index('<h2 id="count-title">')
    n_facts = sum(len(fs.facts) for fs in make_results().factsets)
    assert f"<p>{n_facts} &lt;script&gt;" in main and EVIL not in html  # autoescaped like the rest
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1))
    assert data["n_facts"] == n_facts and len(data["rows"]) == SUMMARY_ROWS  # its script data joins the others'


def test_a_partial_sees_only_its_view(monkeypatch):
    from jinja2 import UndefinedError

    import fact_locator.report.html as module
    from fact_locator.report.sections import SECTIONS, Section

    _with_partial(monkeypatch, "sections/peek.html.j2", "{{ model.name }}\n")
    monkeypatch.setattr(module, "SECTIONS", [*SECTIONS, Section("peek", lambda run: None, "sections/peek.html.j2")])
    with pytest.raises(UndefinedError, match="model"):
        render_html(make_results(), rendered_at=PINNED)


def _with_draws(results, n: int = 64, seed: int = 0):
    """`results` with every trace given n noise draws of each kind around its IE grid (SD 0.1
    per draw), as the tracer keeps them; the means stay the grids."""
    from dataclasses import replace

    import numpy as np

    from fact_locator.tracing.extension import measured_fields
    from fact_locator.tracing.sample_effects import SampleEffects

    rng = np.random.default_rng(seed)
    for fs in results.factsets:
        for fact in fs.facts:
            trace = fact.trace
            corrupt = np.full(n, trace.p_corrupt)
            restored = {}
            for kind, grid in trace.ie.items():
                noise = rng.normal(0.0, 0.1, size=(len(grid), len(grid[0]), n))
                noise -= noise.mean(axis=-1, keepdims=True)
                restored[kind] = np.asarray(grid)[..., None] + trace.p_corrupt + noise
            fields = measured_fields(SampleEffects.from_arrays(corrupt, corrupt, restored))
            fact.trace = replace(trace, **fields, clean_value=trace.p_clean)
    return results


def test_traces_that_kept_their_draws_show_intervals_and_peak_locations():
    import numpy as np
    from tests.support.trace_factory import make_trace_with_draws, run_of

    corrupt = [0.1, 0.2, 0.3, 0.4]
    restored = np.array(corrupt) + np.zeros((2, 5, 4))
    restored[1, 2] += [0.30, 0.32, 0.34, 0.36]  # the peak, the same in every resample
    trace = make_trace_with_draws(corrupt, restored)
    page = render_html(run_of(trace), rendered_at=PINNED)
    te, peak = trace.te_interval(), trace.ie_interval("mlp")[1][2]
    assert f"<td>TE interval</td><td colspan=\"5\">[{te.low:.3f}, {te.high:.3f}] at 95% over 4 noise samples (t-interval)</td>" in page
    assert (f"<td>mlp peak, uncertainty</td><td colspan=\"5\">IE [{peak.low:.3f}, {peak.high:.3f}] at 95%; peak at this site "
            "in 100% of resamples of the noise samples, in a last_subject token in 100%</td>") in page
    (heatmap,) = svgs(page, "heatmap")
    cells = [title.text for title in as_xml(heatmap).iter("title")][1:]
    assert len(cells) == 2 * 5
    assert f"{peak.estimate:.3f} ±{peak.width / 2:.3f}" in cells  # hover: the IE and its interval's half-width
    assert "± half-width of the 95% t-interval over 4 noise samples" in heatmap

    plain = render_html(make_results(), rendered_at=PINNED)  # traces without their draws: as before
    assert "TE interval" not in plain and "peak, uncertainty" not in plain and "±" not in plain


def test_size_per_fact_with_64_noise_draws_kept():
    """The worst case with an interval on every cell's hover: the bound without draws plus at
    most 9 bytes a cell (" ±0.033" is 8 bytes in UTF-8) for the 1080 cells."""
    one = len(render_html(_with_draws(single_fact_results(n_facts=1, dense=True)), rendered_at=PINNED).encode())
    five = len(render_html(_with_draws(single_fact_results(n_facts=5, dense=True)), rendered_at=PINNED).encode())
    assert "±" in render_html(_with_draws(single_fact_results(n_facts=1)), rendered_at=PINNED)
    assert (five - one) / 4 <= 50_000 + 9 * 1080, (five - one) / 4


def test_the_known_marker_is_the_audits_known_rule_not_the_first_token():
    """A fact traced under `unknown: trace` whose first target token is the clean top-1 but whose
    greedy continuation is not the whole target (ROME's rule, the default) shows known "no";
    the first-token rule (`Trace.known`) alone would say "yes"."""
    from tests.support.report_fixtures import colosseum
    from tests.support.trace_factory import run_of

    trace = colosseum()
    assert trace.known  # the first-token rule counts it
    marker = '<td>known</td><td>{}</td>'

    known = render_html(run_of(trace), rendered_at=PINNED)
    assert marker.format("yes") in known

    run = run_of(trace)
    run.factsets[0].facts[0].status_reason = ("traced although unknown: model continues ' Italy and' (greedy, 2 tokens), "
                                              "not the target 'Italy, Rome' (known_rule greedy_target)")
    unknown = render_html(run, rendered_at=PINNED)
    assert marker.format("no") in unknown and marker.format("yes") not in unknown
