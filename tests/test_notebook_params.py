"""Papermill parameter typos are errors; notebook helpers find the project root."""

import subprocess
import sys
from pathlib import Path

import pytest

from itrlib.errors import ConfigError
from itrlib.suite.notebook import check_parameters, find_project_root

ROOT = Path(__file__).resolve().parents[1]


def test_declared_parameters_pass_and_typos_fail():
    namespace = {"profile": "smoke", "run_name": "x", "In": [], "_": None, "sys": sys, "print_it": print}
    assert check_parameters(namespace, ["profile", "run_name"]) == {"profile": "smoke", "run_name": "x"}
    with pytest.raises(ConfigError, match=r"unknown notebook parameter\(s\) \['profle'\]"):
        check_parameters({**namespace, "profle": "smoke"}, ["profile", "run_name"])


def test_project_root_is_found_from_a_subfolder():
    assert find_project_root(ROOT / "notebooks") == ROOT


def test_papermill_typo_stops_the_notebook(tmp_path):
    out = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "00_vse.ipynb"),
                          str(tmp_path / "out.ipynb"), "-p", "profle", "smoke"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "unknown notebook parameter(s) ['profle']" in out.stdout + out.stderr
