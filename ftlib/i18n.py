"""The course in Japanese, generated from the English notebooks so that the two never drift apart.

    python -m ftlib.i18n build   # notebooks/ja/NN_*.ipynb from notebooks/NN_*.ipynb and notebooks/i18n/ja.yaml
    python -m ftlib.i18n check   # exit 1, listing stale or missing translations and out-of-date notebooks/ja files

A Japanese notebook has the English notebook's cells in the same order. Code cells are copied, with only the
RULES below applied. A markdown cell gets the translation stored in notebooks/i18n/ja.yaml under its notebook number
and cell id, next to the hash of the English text it translates: when the English cell changes, its translation is
stale. build still writes a stale translation (and the English text where none exists yet); check fails on both.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ftlib.course import notebooks
from ftlib.env import ROOT

ENGLISH = ROOT / "notebooks"
OUT = ENGLISH / "ja"
TRANSLATIONS = ENGLISH / "i18n" / "ja.yaml"
LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Rule:
    """One allowed difference between an English code cell and its Japanese copy."""

    why: str
    tag: str | None  # only code cells with this tag; None: every code cell
    pattern: str
    replacement: str

    def apply(self, source: str, tags: list[str]) -> str:
        """The source with this rule applied, when the cell has the rule's tag."""
        if self.tag is not None and self.tag not in tags:
            return source
        return re.sub(self.pattern, self.replacement, source, flags=re.M)


RULES = (
    Rule("the Japanese track", "parameters", r'^LANG = "en"', 'LANG = "ja"'),
    Rule("one folder deeper: relative paths up to the repository", None, r'"\.\.(?=[/"])', '"../..'),
    Rule("one folder deeper: where the Colab/Kaggle set-up moves to", "setup",
         r'"ftlib-course/notebooks"', '"ftlib-course/notebooks/ja"'),
)


def english_hash(text: str) -> str:
    """The short hash that ties a translation to the English text it translates. Where the course lives (the
    repository and ref in its links, course.point_to) does not count: pointing the badges at a fork keeps every
    translation current."""
    from ftlib import course

    return hashlib.sha256(course.point_to(text, "OWNER/NAME", "REF").encode("utf-8")).hexdigest()[:12]


def ja_code(source: str, tags: list[str]) -> str:
    """An English code cell as the Japanese notebook has it: RULES applied, nothing else."""
    for rule in RULES:
        source = rule.apply(source, tags)
    return source


def ja_link(url: str) -> str:
    """Where an English notebook's link points from notebooks/ja: hosted notebooks in ja/, relative paths one ../ up."""
    if url.startswith("../"):
        return "../" + url
    return re.sub(r"(/blob/[^/]+/notebooks/)", r"\1ja/", url)


def load_translations(path: Path = TRANSLATIONS) -> dict[str, dict[str, dict[str, str]]]:
    """{notebook number: {cell id: {"en": hash of the English text, "ja": translation}}} from the YAML file."""
    found = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for number, cells in found.items():
        for cell_id, entry in cells.items():
            if set(entry) != {"en", "ja"} or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError(f'{path}: {number}/{cell_id} needs exactly the keys en (the hash, quoted: "...") '
                                 "and ja (the text)")
    return found


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def translate(nb: dict, number: str, translations: dict) -> tuple[dict, list[str]]:
    """The Japanese copy of one English notebook, and what is wrong with its translations."""
    ja, problems = copy.deepcopy(nb), []
    stored = translations.get(number, {})
    for cell in ja["cells"]:
        text, tags, where = _source(cell), cell["metadata"].get("tags", []), f"{number}/{cell['id']}"
        if cell["cell_type"] == "code":
            cell["source"] = ja_code(text, tags).splitlines(keepends=True)
            continue
        entry, now = stored.get(cell["id"]), english_hash(text)
        english = "\n      ".join(text.splitlines())
        if entry is None:
            problems.append(f'{where}: no translation; add it with en: "{now}"\n      {english}')
            continue
        if entry["en"] != now:
            problems.append(f'{where}: stale, the English changed; translate it again and set en: "{now}" '
                            f'(was "{entry["en"]}")\n      {english}')
        lost = [ja_link(url) for url in LINK.findall(text) if ja_link(url) not in LINK.findall(entry["ja"])]
        if lost:
            problems.append(f"{where}: the translation lacks the link(s) {', '.join(lost)}")
        cell["source"] = entry["ja"].splitlines(keepends=True)
    ids = {cell["id"] for cell in nb["cells"] if cell["cell_type"] == "markdown"}
    problems += [f"{number}/{cell_id}: translated, but the English notebook has no such markdown cell"
                 for cell_id in stored if cell_id not in ids]
    return ja, problems


def render(english: Path = ENGLISH, translations: Path = TRANSLATIONS) -> tuple[dict[str, str], list[str]]:
    """{file name: text} of every Japanese notebook, and every translation problem found on the way."""
    stored = load_translations(translations)
    files, problems = {}, []
    for path in notebooks(english):
        nb = json.loads(path.read_text(encoding="utf-8"))
        ja, found = translate(nb, path.name[:2], stored)
        params = [c for c in ja["cells"] if "parameters" in c["metadata"].get("tags", [])]
        if len(params) != 1 or not re.search(r'^LANG = "ja"', _source(params[0]), re.M):
            found.append(f'{path.name}: needs one parameters cell with a line LANG = "en"')
        files[path.name] = json.dumps(ja, indent=1, ensure_ascii=False) + "\n"
        problems += found
    numbers = {path.name[:2] for path in notebooks(english)}
    problems += [f"{number}: translated, but there is no English notebook {number}_*.ipynb"
                 for number in stored if number not in numbers]
    return files, problems


def build(english: Path = ENGLISH, translations: Path = TRANSLATIONS, out: Path = OUT) -> list[str]:
    """Write the Japanese notebooks into `out` (removing ones with no English source); returns the problems."""
    files, problems = render(english, translations)
    out.mkdir(parents=True, exist_ok=True)
    for old in notebooks(out):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return problems


def check(english: Path = ENGLISH, translations: Path = TRANSLATIONS, out: Path = OUT) -> list[str]:
    """Every problem: missing, stale or unused translations, and Japanese notebooks that differ from a build."""
    files, problems = render(english, translations)
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what build writes; run python -m ftlib.i18n build")
    problems += [f"{path}: has no English source; run python -m ftlib.i18n build"
                 for path in notebooks(out) if path.name not in files]
    return problems


def main(argv: list[str] | None = None) -> int:
    """The command line: `python -m ftlib.i18n build|check`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m ftlib.i18n", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "check"])
    args = parser.parse_args(argv)
    problems = (build if args.command == "build" else check)(ENGLISH, TRANSLATIONS, OUT)
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.command == "build":
        print(f"wrote {len(notebooks(OUT))} notebooks to {OUT}"
              + (f"; {len(problems)} problem(s), see above" if problems else ""))
        return 0
    print(f"{len(problems)} problem(s)" if problems else "the Japanese notebooks are up to date")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
