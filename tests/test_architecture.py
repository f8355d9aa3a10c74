"""The package's import graph: one way, no cycle, the library apart from the suite, a light command line."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "itrlib"
LAZY_IMPORTERS = {"itrlib.cli", "itrlib.suite.__main__"}
"""Command lines: each command imports what it runs when it runs (``--help`` must not load torch)."""


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(itrlib modules imported at module level, itrlib modules imported inside functions) by one file."""
    top, local = set(), set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("itrlib"):
            names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names if a.name.startswith("itrlib")}
        else:
            continue
        (local if id(node) in inside else top).update(names)
    return top, local


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _targets(names: set[str]) -> set[str]:
    """The package's modules among imported names (``from itrlib.a import b`` names module a, or a.b)."""
    return {n for n in names if n in MODULES}


def test_the_import_graph_has_no_cycle():
    edges = {m: _targets(top | local) - {m} for m, (top, local) in GRAPH.items()}
    # a package imports its own submodules' names through its __init__ only when it re-exports them
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(edges):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_library_never_imports_the_suite():
    offenders = {m: sorted(n for n in _targets(top | local) if n.startswith("itrlib.suite"))
                 for m, (top, local) in GRAPH.items() if not m.startswith("itrlib.suite")}
    assert not {m: found for m, found in offenders.items() if found}


def test_config_imports_no_model_and_only_command_lines_import_inside_functions():
    config_top, config_local = GRAPH["itrlib.config"]
    assert not {n for n in config_top | config_local if n.startswith("itrlib.models")}
    hidden = {m: sorted(_targets(local)) for m, (_, local) in GRAPH.items()
              if m not in LAZY_IMPORTERS and _targets(local)}
    assert not hidden, f"function-local imports of the package's modules: {hidden}"


def test_train_and_eval_do_not_load_the_benchmarks_or_the_dataset_synthesis():
    code = ("import sys, itrlib.cli, itrlib.engine.trainer, itrlib.runs.any_run, itrlib.runs.official; "
            "print(sorted(m for m in sys.modules if m in ('itrlib.suite.bench', 'itrlib.data.synth') "
            "or m.startswith('itrlib.suite')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]"


def test_the_command_line_parses_without_loading_torch():
    code = ("import sys; from itrlib.cli import _parser; _parser(); "
            "print([m for m in ('torch', 'numba', 'transformers') if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]"


def test_the_checks_catch_what_they_are_for(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from itrlib.a import b\n\ndef f():\n    from itrlib.c import d\n    import itrlib.e\n")
    assert _imports(source) == ({"itrlib.a", "itrlib.a.b"}, {"itrlib.c", "itrlib.c.d", "itrlib.e"})


def test_studies_read_what_a_profile_trains_from_its_fields_not_its_name():
    studies = sorted((PACKAGE / "suite" / "studies").glob("*.py"))
    named = [p.name for p in studies if '"smoke"' in p.read_text(encoding="utf-8")]
    assert not named, f"studies that test the profile's name instead of its fields: {named}"
