"""docs/results/embedded/ (committed) holds every table and figure that the notebooks write under the embedded
profile, and nothing that none of them writes any more.

The names are read from the notebooks' code: every ``tables_dir / "<stem>"`` (a table: .md, .csv and .tex) and
every ``figures_dir / "<name>.png"``. A name built in an f-string is a pattern: ``{protocol}`` stands for each of
the profile's protocols, any other field for at least one committed file.
"""

import json
import re
from pathlib import Path

import pytest

from itrlib.suite.notebook_runner import project_notebooks
from itrlib.suite.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "results" / "embedded"
PROFILE = get_profile("embedded")
TABLE_SUFFIXES = (".md", ".csv", ".tex")
WRITTEN = re.compile(r"""(tables|figures)_dir\s*/\s*(f?)"([^"]+)\"""")


def _written_names() -> dict[str, list[tuple[str, bool]]]:
    """``{"tables": [(name, is_fstring)], "figures": [...]}`` over every notebook's code cells."""
    found: dict[str, list[tuple[str, bool]]] = {"tables": [], "figures": []}
    for notebook in project_notebooks(ROOT):
        cells = json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        for kind, fstring, name in WRITTEN.findall(code):
            found[kind].append((name, bool(fstring)))
    return found


def _patterns(name: str, fstring: bool) -> list[re.Pattern]:
    """One regex per expansion of ``{protocol}``; other f-string fields match any text."""
    if not fstring:
        return [re.compile(re.escape(name))]
    names = [name.replace("{protocol}", p) for p in PROFILE.protocols] if "{protocol}" in name else [name]
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(n))) for n in names]


def _expected() -> dict[str, list[re.Pattern]]:
    return {kind: [p for name, fstring in names for p in _patterns(name, fstring)]
            for kind, names in _written_names().items()}


def _committed(kind: str) -> list[str]:
    folder = PUBLISHED / kind
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_notebooks_name_what_they_write():
    names = _written_names()
    assert ("vse", False) in names["tables"] and ("leaderboard_{protocol}", True) in names["tables"]
    assert ("leaderboard_budget_curve.png", False) in names["figures"] and len(names["tables"]) >= 18


@pytest.mark.parametrize("kind", ["tables", "figures"])
def test_every_table_and_figure_written_has_its_committed_counterpart(kind):
    committed = _committed(kind)
    suffixes = TABLE_SUFFIXES if kind == "tables" else ("",)
    missing = [f"{pattern.pattern}{suffix}" for pattern in _expected()[kind] for suffix in suffixes
               if not any(pattern.fullmatch(name[:len(name) - len(suffix)]) for name in committed
                          if name.endswith(suffix))]
    assert not missing, (f"{PUBLISHED.relative_to(ROOT)}/{kind} lacks {missing}: run make reproduce-tables and "
                         "commit docs/results/embedded/")


@pytest.mark.parametrize("kind", ["tables", "figures"])
def test_nothing_committed_is_stale(kind):
    stems = [Path(name).stem if kind == "tables" else name for name in _committed(kind)]
    stale = [stem for stem in stems if not any(pattern.fullmatch(stem) for pattern in _expected()[kind])]
    assert not stale, f"{PUBLISHED.relative_to(ROOT)}/{kind} holds {stale}, which no notebook writes any more"


def test_the_published_report_is_the_embedded_profiles():
    report = (PUBLISHED / "REPORT.md").read_text(encoding="utf-8")
    assert report.startswith("# itrlib report: profile `embedded`") and "## Leaderboard" in report
