"""Helpers for the papermill notebooks: project root, parameter checking."""

from __future__ import annotations

import os
from pathlib import Path

from itrlib.errors import ConfigError

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest folder above ``start`` (default: cwd) holding ``pyproject.toml`` and ``itrlib/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "itrlib").is_dir():
            return folder
    return here


def enter_project_root() -> Path:
    """chdir to the project root so relative paths (data/, outputs/) mean the same from anywhere."""
    root = find_project_root()
    os.chdir(root)
    return root


def check_parameters(namespace: dict, allowed: list[str]) -> dict:
    """Fail on parameters papermill injected that the notebook does not declare (a typo is an error).

    ``namespace`` is the notebook's ``globals()`` right after the parameters cell and papermill's injected
    cell; ``allowed`` names the declared parameters. Returns ``{name: value}`` of the declared ones.
    """
    unknown = sorted(name for name, value in namespace.items()
                     if not name.startswith("_") and name not in allowed and name not in _IPYTHON_NAMES
                     and not callable(value) and type(value).__name__ != "module")
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; this notebook takes {sorted(allowed)}")
    return {name: namespace[name] for name in allowed}


def show_markdown(text: str) -> None:
    """Display Markdown (e.g. a result table) whose plain-text form is the Markdown itself, so logs and
    plain-text viewers show the table instead of ``<IPython.core.display.Markdown object>``."""
    from IPython.display import display

    display({"text/markdown": text, "text/plain": text}, raw=True)
