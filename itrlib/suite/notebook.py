"""Helpers for the papermill notebooks: project root, parameter checking."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from itrlib.data.text import resolve_bert_path
from itrlib.errors import ConfigError, ItrlibError
from itrlib.suite.profiles import check_data_folder, check_overrides, get_profile

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
    """Fail on parameters papermill injected that the notebook does not declare (a typo is an error), and on bad
    values of the common ones (:func:`check_notebook_inputs`), before anything runs or is written.

    ``namespace`` is the notebook's ``globals()`` right after the parameters cell and papermill's injected
    cell; ``allowed`` names the declared parameters. Returns ``{name: value}`` of the declared ones. In a
    notebook, an :class:`~itrlib.errors.ItrlibError` from here on shows as its one line, without a traceback
    (:func:`show_itrlib_errors_briefly`).
    """
    show_itrlib_errors_briefly()
    unknown = sorted(name for name, value in namespace.items()
                     if not name.startswith("_") and name not in allowed and name not in _IPYTHON_NAMES
                     and not callable(value) and type(value).__name__ != "module")
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; this notebook takes {sorted(allowed)}")
    params = {name: namespace[name] for name in allowed}
    if "profile" in params:
        check_notebook_inputs(params["profile"], data_root=params.get("data_root"),
                              bert_path=params.get("bert_path"), overrides=params.get("overrides", []),
                              root=find_project_root())
    return params


def check_notebook_inputs(profile: str, *, data_root: str | Path | None = None, bert_path: str | Path | None = None,
                          overrides: Sequence[str] = (), root: Path | None = None) -> None:
    """The profile exists, ``data_root`` (relative: to ``root``, where the notebooks run) is an existing folder,
    ``bert_path`` names text-encoder weights that are here (a folder, relative: to ``root``), and
    ``overrides`` is a list of ``section.key=value`` strings that the profile's presets accept."""
    get_profile(profile)
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"parameter overrides must be a list of strings such as ['train.epochs=2'], got "
                          f"{overrides!r}")
    if data_root is not None:
        if not isinstance(data_root, (str, Path)):
            raise ConfigError(f"parameter data_root must be a folder path (a string), got {data_root!r}")
        check_data_folder(Path(root or ".") / Path(data_root).expanduser(), profile)
    if bert_path is not None:
        if not isinstance(bert_path, (str, Path)):
            raise ConfigError(f"parameter bert_path must be a folder path or model name (a string), got {bert_path!r}")
        relative = Path(root or ".") / Path(bert_path).expanduser()  # a folder relative to where notebooks run
        resolve_bert_path(str(relative) if relative.is_dir() else str(bert_path))
    check_overrides(profile, overrides)


def show_itrlib_errors_briefly() -> None:
    """In IPython (a notebook kernel), show a raised :class:`~itrlib.errors.ItrlibError` as the one line
    ``ConfigError: message``: no traceback in the cell's error output nor in what papermill reports (the
    message names the cause; the stack would only bury it). Outside IPython: nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((ItrlibError,), _show_error_line)


def _show_error_line(shell, etype: type, value: BaseException, tb, tb_offset: int | None = None) -> list[str]:
    """IPython custom exception handler: publish the error as one line (``ename: evalue``) and return it. IPython
    ignores what the handler returns, so it publishes the line itself through ``_showtraceback``, the hook the
    kernel overrides to send the cell's error output (which papermill reports)."""
    line = [f"{etype.__name__}: {value}"]
    shell._showtraceback(etype, value, line)
    return line


def show_markdown(text: str) -> None:
    """Display Markdown (e.g. a result table) whose plain-text form is the Markdown itself, so logs and
    plain-text viewers show the table instead of ``<IPython.core.display.Markdown object>``."""
    from IPython.display import display

    display({"text/markdown": text, "text/plain": text}, raw=True)
