"""Notebooks, docs and sources: Markdown that renders as written, no citation of files the repository lacks."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
MISSING_FILES = re.compile(r"SPEC-[A-Z]|DESIGN\.md|\.\./shared")
"""Planning files of the original authors that were never part of the repository."""
REPO_PATH = re.compile(r"(?<![\w/.])((?:docs|itrlib|notebooks|tests)/[\w./-]*\w\.(?:md|py|csv|yaml|ipynb))")
"""A path inside the repository cited by a cell (e.g. ``docs/AFA_NOTES.md``)."""


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT / "notebooks").as_posix() for p in paths]


def test_the_notebooks_are_found():
    assert {"00_vse.ipynb", "afa/01_train_eval.ipynb"} <= set(_ids(NOTEBOOKS))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_markdown_holds_no_literal_backslash_n(path):
    bad = [i for i, cell in enumerate(_cells(path))
           if cell["cell_type"] == "markdown" and "\\n" in "".join(cell["source"])]
    assert not bad, f"markdown cells {bad} hold a literal \\n (a paragraph would render as part of a heading)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cells_cite_only_files_in_the_repository(path):
    for i, cell in enumerate(_cells(path)):
        source = "".join(cell["source"])
        assert not MISSING_FILES.search(source), f"cell {i} cites a file outside the repository: {source!r}"
        missing = [p for p in REPO_PATH.findall(source) if not (ROOT / p).exists()]
        assert not missing, f"cell {i} cites {missing}, not in the repository"


TEXTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "itrlib").rglob("*.py"),
                *(ROOT / "tests").glob("*.py")])
"""Everything a user reads besides the notebooks: README, docs, the package's and the tests' sources."""


@pytest.mark.parametrize("path", TEXTS, ids=[p.relative_to(ROOT).as_posix() for p in TEXTS])
def test_documents_and_sources_cite_no_file_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    if path.name == "test_notebook_text.py":  # this file spells the patterns out to test them
        text = text.split("def test_the_citation_checks_catch_what_they_are_for", 1)[0]
    lines = [n for n, line in enumerate(text.splitlines(), 1) if MISSING_FILES.search(line)]
    assert not lines, f"{path.relative_to(ROOT)} cites a file outside the repository on lines {lines}"


def test_the_citation_checks_catch_what_they_are_for():
    assert MISSING_FILES.search("defaults from SPEC-AFA, except one")
    assert MISSING_FILES.search("see DESIGN.md") and MISSING_FILES.search("../shared/refs")
    assert REPO_PATH.findall("(`docs/AFA_NOTES.md` has it; itrlib/suite/studies/afa.py)") == [
        "docs/AFA_NOTES.md", "itrlib/suite/studies/afa.py"]
