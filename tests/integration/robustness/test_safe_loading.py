"""Safe loading: weights only from safetensors / GGUF, no remote code unless asked, YAML
safe-load only, no eval/exec anywhere in the package, and HTML escaping of every string a
fact set or a run can put into a report."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import fact_locator
from tests.integration.robustness.clean_failure import assert_one_clean_line

PACKAGE = Path(fact_locator.__file__).parent


# -- weights ----------------------------------------------------------------------------------
@pytest.fixture
def recorded(monkeypatch):
    """Record the kwargs of transformers' from_pretrained calls (then call through)."""
    import transformers

    calls: list[tuple[str, dict]] = []
    for cls_name in ("AutoModelForCausalLM", "AutoTokenizer"):
        cls = getattr(transformers, cls_name)
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _name=cls_name, _original=original, **kwargs):
            calls.append((_name, dict(kwargs)))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls


def test_pickle_only_weights_are_refused_before_transformers_is_asked(model_dirs, recorded):
    from fact_locator.errors import ModelLoadError
    from fact_locator.models.loading import load_model

    with pytest.raises(ModelLoadError, match=r"weights only in pickle files \(pytorch_model.bin\); fact-locator never "
                                             r"unpickles weights because unpickling can run arbitrary code"):
        load_model(str(model_dirs["pickle-only"]), device="cpu", progress=False)
    assert recorded == []  # nothing was handed to transformers


def test_models_load_with_safetensors_only_and_no_remote_code_by_default(model_dirs, recorded):
    from fact_locator.models.loading import load_model

    load_model(str(model_dirs["good"]), device="cpu", progress=False)
    by_name = dict(recorded)
    assert by_name["AutoModelForCausalLM"]["use_safetensors"] is True
    assert by_name["AutoModelForCausalLM"]["trust_remote_code"] is False
    assert by_name["AutoTokenizer"]["trust_remote_code"] is False


def test_remote_code_only_when_passed(model_dirs, recorded, capsys):
    from fact_locator.cli import main

    code = main(["trace", "--subject", "Toyota", "--relation", "{} was founded in", "--target", "Japan",
                 "--model", str(model_dirs["good"]), "--samples", "1", "--kinds", "hidden", "--device", "cpu",
                 "--no-progress", "--trust-remote-code"])
    assert code == 0, capsys.readouterr().err
    assert {kw["trust_remote_code"] for _, kw in recorded} == {True}
    recorded.clear()
    code = main(["trace", "--subject", "Toyota", "--relation", "{} was founded in", "--target", "Japan",
                 "--model", str(model_dirs["good"]), "--samples", "1", "--kinds", "hidden", "--device", "cpu",
                 "--no-progress"])
    assert code == 0
    assert {kw["trust_remote_code"] for _, kw in recorded} == {False}


def test_the_plugin_never_trusts_remote_code(fl, model_dirs, recorded):
    fl.factset("geo", 'unknown: trace\nfacts:\n  - subject: Toyota\n    relation: "{} was founded in"\n    target: Japan\n')
    result = fl.run(f"--fl-model={model_dirs['good']}", "--fl-kinds", "hidden")
    assert result.ret == 0, result.stdout.str()
    assert recorded and {kw["trust_remote_code"] for _, kw in recorded} == {False}
    assert {kw["use_safetensors"] for name, kw in recorded if name == "AutoModelForCausalLM"} == {True}


# -- YAML -------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system",
    "!!python/object/new:os.system",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom",
])
def test_yaml_code_tags_are_a_collection_error_and_nothing_runs(fl, tag, tmp_path):
    marker = tmp_path / "pwned"
    fl.factset("evil", f'facts:\n  - subject: {tag} ["touch {marker}"]\n    relation: "{{}} is"\n    target: y\n')
    result = fl.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    assert_one_clean_line(result.stdout.str(), "factsets/evil.yaml:2: cannot read the value")
    assert not marker.exists()
    assert fl.traced() == []


def test_the_package_never_evals_or_execs():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if isinstance(node.func, ast.Name) and name in ("eval", "exec", "compile"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}(")
                if name in ("load", "loads") and isinstance(node.func, ast.Attribute) and \
                        getattr(node.func.value, "id", None) in ("pickle", "torch", "marshal", "dill"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.func.value.id}.{name}(")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n in ("pickle", "marshal", "dill", "cloudpickle") for n in names if n):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: imports {names}")
    assert offenders == []  # (model.eval(), torch's eval mode, and re.compile are methods: allowed)
    text = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    assert not re.search(r"yaml\.(unsafe_)?load\(|yaml\.full_load|Loader=yaml\.(Unsafe|Full)?Loader\b", text)


# -- HTML escaping ----------------------------------------------------------------------------
HOSTILE = ["<script>alert(1)</script>", '"onmouseover="x', "'single'", "</svg><img src=x>", "{{ 7*7 }}", "\u202eevil"]
# `{{ 7*7 }}` may appear as text (it is not HTML); it must never be evaluated (no "49" in its place).
RAW_FORBIDDEN = ["<script>alert", "</svg><img", '"onmouseover="', "<img src=x>", "\u202e"]


def _hostile_factset() -> str:
    q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 - a YAML double-quoted scalar
    rlo = "\u202e"
    h = " ".join(HOSTILE)
    subject = "The <script>alert(1)</script> " + rlo + "Tower"
    relation = '{} is "onmouseover="x </svg><img src=x> {{ 7*7 }} in'
    return "\n".join([
        "name: hostile",
        "description: " + q("desc " + h),
        "tags: [" + ", ".join(q(t) for t in ("<script>tag</script>", rlo + "rlo-tag", "{{ 7*7 }}")) + "]",
        "unknown: trace",
        "expect:",
        "  - mlp-peak: {at: before_subject, xfail: " + q("reason " + h) + "}",
        '  - te: ">= 2"',
        "aggregate:",
        '  - ate: ">= 2"',
        "facts:",
        "  - id: hostile-1",
        "    subject: " + q(subject),
        "    relation: " + q(relation),
        "    target: " + q("</svg><img src=x>"),
        "    tags: [" + q('"onmouseover="x') + "]",
        "  - id: plain",
        "    subject: Toyota",
        '    relation: "{} was founded in"',
        "    target: " + q(rlo + "Japan"),
    ]) + "\n"


def test_hostile_ids_and_names_are_refused_by_the_loader(tmp_path):
    from fact_locator.errors import FactSetError
    from fact_locator.factset import parse_factset

    for text in ('name: "<script>"\nfacts:\n  - {subject: a, relation: "{} b", target: c}\n',
                 'facts:\n  - {id: "<script>", subject: a, relation: "{} b", target: c}\n',
                 'facts:\n  - {id: "a\u202eb", subject: a, relation: "{} b", target: c}\n'):
        with pytest.raises(FactSetError, match="must match"):
            parse_factset(text, tmp_path / "x.yaml")


def test_every_hostile_string_is_escaped_in_the_html_report(fl):
    fl.factset("hostile", _hostile_factset())
    result = fl.run("--fl-kinds", "hidden,mlp", "--fl-json", "results.json", "--fl-html", "report.html")
    assert result.ret == 1  # te >= 2 and ate >= 2 fail on purpose: their messages are in the report
    html = (fl.path / "report.html").read_text(encoding="utf-8")
    data = fl.results()
    facts = {f["id"]: f for f in data["factsets"][0]["facts"]}
    assert "<script>" in facts["hostile-1"]["subject"]  # the strings did reach the results
    assert "\u202e" in facts["plain"]["target"] and "\u202e" in data["factsets"][0]["description"] + facts["hostile-1"]["subject"]
    messages = [o["message"] for f in facts.values() for o in f["outcomes"]]
    assert any(m for m in messages)
    for raw in RAW_FORBIDDEN:
        assert raw not in html, f"{raw!r} appears unescaped in the HTML report"
    assert "{{ 7*7 }}" in html and " 49 in" not in html  # shown as written, never evaluated as a template
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, escaped
    # scripts in the page: only the report's own inline script(s), none from the data
    assert html.count("<script") == html.count("</script>")
    for block in re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S):
        assert "alert(1)" not in block or "\\u003c" in block or "\\x3c" in block.lower() or "&lt;" in block
