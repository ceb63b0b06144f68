"""The Japanese course: notebooks/ja is the English course with translated prose, and it never drifts from it."""

import ast
import json
import re
import shutil

import nbformat
import pytest
import yaml
from test_course import SMOKE

from ftlib import course, i18n
from ftlib.env import ROOT

ENGLISH = course.notebooks()
JAPANESE = course.notebooks(i18n.OUT)
GLOSSARY = i18n.OUT / "GLOSSARY.md"


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"])


def test_rules_rewrite_only_what_they_name():
    assert i18n.ja_code('LANG = "en"  # "en" or "ja"', ["parameters"]) == 'LANG = "ja"  # "en" or "ja"'
    assert i18n.ja_code('LANG = "en"', []) == 'LANG = "en"'  # only the parameters cell switches the language
    assert i18n.ja_code('x = "../data/a.csv"\nsys.path.insert(0, "..")', []) == \
        'x = "../../data/a.csv"\nsys.path.insert(0, "../..")'
    assert i18n.ja_code('print("...", "..x", "a/../b")', []) == 'print("...", "..x", "a/../b")'
    assert i18n.ja_code('os.chdir("ftlib-course/notebooks")', ["setup"]) == 'os.chdir("ftlib-course/notebooks/ja")'
    assert i18n.ja_code('os.chdir("ftlib-course/notebooks")', []) == 'os.chdir("ftlib-course/notebooks")'


def test_every_english_notebook_has_a_japanese_one():
    assert [p.name for p in JAPANESE] == [p.name for p in ENGLISH]


@pytest.mark.parametrize("path", ENGLISH, ids=lambda p: p.name)
def test_japanese_code_cells_are_the_english_ones_up_to_the_rules(path):
    """Same cells in the same order; a code cell differs only where a rule applies, on the lines the rules name."""
    en, ja = cells(path), cells(i18n.OUT / path.name)
    shape = [(c["id"], c["cell_type"], c["metadata"]) for c in en]
    assert [(c["id"], c["cell_type"], c["metadata"]) for c in ja] == shape
    allowed = re.compile(r'^LANG = "en"|"\.\.[/"]|"ftlib-course/notebooks"')
    for e, j in zip(en, ja, strict=True):
        if e["cell_type"] != "code":
            continue
        tags = e["metadata"].get("tags", [])
        assert source(j) == i18n.ja_code(source(e), tags), f"{path.name} {e['id']}: differs beyond the rules"
        changed = [a for a, b in zip(source(e).splitlines(), source(j).splitlines(), strict=True) if a != b]
        assert all(allowed.search(line) for line in changed), f"{path.name} {e['id']}: {changed}"


def test_every_markdown_cell_has_a_current_translation():
    _, problems = i18n.render()
    assert not problems, "\n".join(problems)


def test_notebooks_ja_is_what_build_writes():
    files, _ = i18n.render()
    stale = [name for name, text in files.items() if (i18n.OUT / name).read_text(encoding="utf-8") != text]
    assert not stale, f"run python -m ftlib.i18n build: {stale}"


@pytest.mark.parametrize("path", JAPANESE, ids=lambda p: p.name)
def test_japanese_notebooks_run_the_japanese_track(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    lang = [node.value.value for node in ast.parse(params[0].source).body
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["LANG"]]
    assert lang == ["ja"]
    prose = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].source.startswith("# ") and "理解度チェック" in prose
    assert len(re.findall(r"[\u3040-\u30ff]", prose)) > len(re.findall(r"[A-Za-z]", prose)) / 4, "mostly English"


@pytest.mark.parametrize("path", JAPANESE, ids=lambda p: p.name)
def test_paths_and_links_resolve_from_notebooks_ja(path):
    """Relative paths in code, links and the badges' repository paths all lead to files that exist."""
    for cell in cells(path):
        text = source(cell)
        if cell["cell_type"] == "code":
            for relative in re.findall(r'"(\.\./[^"]*)"', text):
                assert (path.parent / relative).exists(), f"{path.name} {cell['id']}: {relative}"
            continue
        for url in i18n.LINK.findall(text):
            if "/blob/" in url and "/notebooks/" in url:
                hosted = ROOT / "notebooks" / url.split("/notebooks/", 1)[1]
                assert hosted.exists(), f"{path.name} {cell['id']}: {url}"
            elif not url.startswith("http"):
                assert (path.parent / url).exists(), f"{path.name} {cell['id']}: {url}"
    assert f"notebooks/ja/{path.name}" in source(cells(path)[0]), "the badges open the Japanese notebook"


def test_check_lists_stale_missing_unused_and_unbuilt(tmp_path, monkeypatch, capsys):
    english, out = tmp_path / "en", tmp_path / "ja"
    english.mkdir()
    shutil.copy(ENGLISH[0], english)
    translations = tmp_path / "ja.yaml"
    stored = i18n.load_translations()
    number, name = ENGLISH[0].name[:2], ENGLISH[0].name
    stored = {number: stored[number]}
    first, second = [c["id"] for c in cells(ENGLISH[0]) if c["cell_type"] == "markdown"][:2]
    stored[number]["c99"] = {"en": "0", "ja": "消えたセル"}
    stored[number][first]["ja"] = "リンクのない翻訳"
    translations.write_text(yaml.safe_dump(stored, allow_unicode=True), encoding="utf-8")
    nb = json.loads((english / name).read_text(encoding="utf-8"))
    old = next(c for c in nb["cells"] if c["id"] == second)
    old["source"] = [source(old) + "\nOne more English sentence."]
    nb["cells"].append({"cell_type": "markdown", "id": "c98", "metadata": {}, "source": ["## New"]})
    (english / name).write_text(json.dumps(nb), encoding="utf-8")
    monkeypatch.setattr(i18n, "ENGLISH", english)
    monkeypatch.setattr(i18n, "TRANSLATIONS", translations)
    monkeypatch.setattr(i18n, "OUT", out)

    assert i18n.main(["check"]) == 1
    err = capsys.readouterr().err
    assert f"{out / name}: differs from what build writes" in err
    assert i18n.main(["build"]) == 0
    capsys.readouterr()
    assert i18n.main(["check"]) == 1
    err = capsys.readouterr().err
    assert f"{number}/{second}: stale" in err and f'en: "{i18n.english_hash(source(old))}"' in err
    assert f"{number}/c98: no translation" in err and f"{number}/c99: translated, but" in err
    assert f"{number}/{first}: the translation lacks the link(s) https://colab" in err
    assert "differs from what build writes" not in err
    built = {c["id"]: source(c) for c in cells(out / name)}
    assert built[second] == stored[number][second]["ja"]  # a stale translation is still written
    assert built["c98"] == "## New"  # a missing one falls back to the English


def avoided_terms():
    """The glossary's "使わない表記" column: forms the course's Japanese never uses."""
    terms = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        columns = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(columns) == 4 and columns[2] and not set(columns[2]) <= set("-"):
            terms += [t.strip() for t in columns[2].split(",") if t.strip() != "使わない表記"]
    return terms


def test_japanese_text_keeps_to_the_glossary():
    terms = avoided_terms()
    assert {"アダプタ", "汎用的な能力", "オーバーフィッティング"} <= set(terms)
    for path in [i18n.TRANSLATIONS, ROOT / "README.ja.md"]:
        text = path.read_text(encoding="utf-8")
        for term in terms:  # "アダプタ" is avoided, "アダプター" is not
            found = re.findall(re.escape(term) + ("" if term.endswith("ー") else "(?!ー)"), text)
            assert not found, f"{path.name} writes {term!r}; the glossary says otherwise"


def test_readme_ja_points_to_the_japanese_notebooks():
    text = (ROOT / "README.ja.md").read_text(encoding="utf-8")
    for path in JAPANESE:
        assert f"(notebooks/ja/{path.name})" in text and f"blob/{course.REF}/notebooks/ja/{path.name}" in text
    assert f"blob/{course.REF}/notebooks/0" not in text and "](notebooks/0" not in text
    for url in i18n.LINK.findall(text):
        if not url.startswith(("http", "#")):  # "#...": a heading of this file
            assert (ROOT / url).exists(), url


@pytest.mark.slow
def test_every_japanese_notebook_executes(tmp_path):
    results = course.run(parameters=SMOKE, folder=i18n.OUT, build=tmp_path)
    assert all(r.status == "ok" for r in results), [f"{r.notebook}: {r.error}" for r in results if r.error]
    assert [r.notebook for r in results] == [p.name for p in ENGLISH]
