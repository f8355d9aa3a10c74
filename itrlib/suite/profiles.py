"""Profiles: which data, presets, protocols and output folder a notebook or `make` target uses.

``smoke`` (tests and the notebooks' regression check, ~25 s a run), ``embedded`` (the synthetic dataset,
minutes on a CPU), ``f30k`` and ``coco`` (real precomp features, the papers' settings). A preset is
``<method>_<profile>`` in ``itrlib/configs``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import itrlib.models  # noqa: F401  (registers every model: configs resolve model.name through the registry)
from itrlib.config import RunConfig, list_presets, load_config
from itrlib.data import synth
from itrlib.errors import ConfigError, DataError
from itrlib.evaluation.protocols import PROTOCOLS
from itrlib.io import atomic_write_text


@dataclass(frozen=True)
class Profile:
    name: str
    protocols: tuple[str, ...]
    """Evaluation protocols reported under this profile."""
    output_root: str
    """Everything the profile writes: ``<output_root>/runs``, ``/tables``, ``/figures`` and ``/notebooks``
    (executed notebooks). One folder per profile, so real-data runs never touch the embedded results."""
    synth_size: str | None = None
    """Size of the embedded dataset this profile builds when missing (``None``: real data, never built)."""
    reduced_studies: bool = False
    """Train the studies' reduced sets (fewer ablation rows, sweep points and timing sizes): their code paths,
    fast enough for the notebooks' regression check."""
    study_steps: int | None = None
    """Optimiser steps of an AFA or USER ablation/sweep run (one epoch at the initial lr cut to this many steps;
    ``None``: each study's own budget)."""
    seeds: int = 1
    """Seeds of every leaderboard method (seed 0 is the run the paper notebooks share; seed i trains with
    ``train.seed`` = the preset's + i)."""
    fresh_runs: bool = False
    """Reuse a run folder only if the current itrlib code trained it (smoke runs are shared between the
    notebooks, but must never resume or reuse a run of an older code version)."""

    @property
    def runs_dir(self) -> Path:
        return Path(self.output_root) / "runs"

    @property
    def tables_dir(self) -> Path:
        return Path(self.output_root) / "tables"

    @property
    def figures_dir(self) -> Path:
        return Path(self.output_root) / "figures"

    @property
    def notebooks_dir(self) -> Path:
        return Path(self.output_root) / "notebooks"

    @property
    def synthetic(self) -> bool:
        """Whether the profile runs on the embedded synthetic dataset (else: real precomp features)."""
        return self.synth_size is not None


CODE_STAMP = "itrlib_code.sha256"
"""File in a run folder of a ``fresh_runs`` profile: :func:`code_fingerprint` of the code that trained it."""
ALL_PROTOCOLS = tuple(PROTOCOLS)
PROFILES = {
    # smoke skips coco5k: same code path as f30k1k (one block), and make test must stay fast
    "smoke": Profile("smoke", ("f30k1k", "coco1k"), "outputs/smoke", synth_size="smoke", fresh_runs=True,
                     reduced_studies=True, study_steps=9, seeds=2),
    "embedded": Profile("embedded", ALL_PROTOCOLS, "outputs/embedded", synth_size="small", seeds=3),
    "f30k": Profile("f30k", ("f30k1k",), "outputs/f30k"),
    "coco": Profile("coco", ("coco1k", "coco5k"), "outputs/coco"),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    return PROFILES[name]


def run_config(method: str, profile: str, *, name: str | None = None, data_root: str | None = None,
               bert_path: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Config of ``<method>_<profile>`` with the run placed under the profile's output folder.

    ``data_root`` (precomp folder) and ``bert_path`` (text-encoder weights) replace the preset's
    ``data.root`` and ``text.bert_path`` when given; ``overrides`` come last and win.
    """
    spec = get_profile(profile)
    extra = [f"output_dir={spec.runs_dir}"]
    if name:
        extra.append(f"name={name}")
    if data_root:
        extra.append(f"data.root={data_root}")
    if bert_path:
        extra.append(f"text.bert_path={bert_path}")
    return load_config(f"{method}_{profile}", [*extra, *(overrides or [])])


def default_data_root(profile: str) -> Path:
    """The ``data.root`` of the profile's presets (``vse_<profile>``; the other methods' presets inherit it)."""
    return Path(load_config(f"vse_{profile}").data.root)


def check_data_folder(root: str | Path, profile: str) -> None:
    """A :class:`DataError` naming ``root`` if it is not an existing folder, saying what belongs there (nothing is
    created: only :func:`ensure_data` builds the profile's own default synthetic folder)."""
    root = Path(root).expanduser()
    if root.is_dir():
        return
    spec = get_profile(profile)
    problem = "is not a folder" if root.exists() else "does not exist (nothing was created)"
    build = (f"; or build the synthetic dataset there first: python -m itrlib data synth --out {root} --size "
             f"{spec.synth_size} (without a data folder the {profile} profile uses {default_data_root(profile)}, "
             "built when missing)" if spec.synthetic else "")
    raise DataError(f"data folder {root} {problem}: name the folder holding the precomp features "
                    f"({{split}}_ims.npy, {{split}}_caps.txt, {{split}}_ids.txt, or a precomp/ folder of them){build}")


def check_overrides(profile: str, overrides: Sequence[str]) -> None:
    """Raise the :class:`ConfigError` of an override that no preset of ``profile`` accepts (a misspelt key, a
    bad value) before anything runs. A model key needs one method's preset only: the notebooks of the others
    fail on it when they run."""
    presets = sorted((name for name in list_presets() if name.endswith(f"_{profile}")),
                     key=lambda name: not name.startswith("vse_"))
    for override in overrides:
        errors = []
        for preset in presets:
            try:
                load_config(preset, [override])
                break
            except ConfigError as exc:
                errors.append(exc)
        else:
            raise errors[0]


def ensure_data(config: RunConfig, profile: str, progress: bool = True) -> Path:
    """Build the embedded dataset at ``config.data.root`` if this profile uses one, the folder is the profile's
    default (:func:`default_data_root`) and it is missing.

    A data folder named by the user that does not exist is a :class:`DataError` (never created or filled with
    synthetic data); one that exists without a dataset card is read as the user's precomp features. An embedded
    dataset written by another generator version is a :class:`DataError` that says what changed and how to
    rebuild it (rebuilding is not automatic: the old files may be what earlier runs used)."""
    spec = get_profile(profile)
    root = Path(config.data.root)
    card = root / "dataset_card.json"
    if not spec.synthetic:
        return root
    if not card.is_file():
        if root.resolve() == default_data_root(profile).resolve():
            synth.write_synthetic(root, size=spec.synth_size, progress=progress)
        else:
            check_data_folder(root, profile)
        return root
    found = json.loads(card.read_text(encoding="utf-8")).get("generator_version")
    if found != synth.GENERATOR_VERSION:
        change = synth.GENERATOR_CHANGES.get(synth.GENERATOR_VERSION, "see itrlib/data/synth.py")
        raise DataError(f"{root} was written by the synthetic-data generator {found}; this code writes "
                        f"{synth.GENERATOR_VERSION} ({change}). Rebuild it: make data, or python -m itrlib data synth "
                        f"--out {root} --size {spec.synth_size}")
    return root


def code_fingerprint() -> str:
    """SHA-256 of itrlib's Python sources and presets: the code version a run was trained with."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml")):
        digest.update(f"{path.relative_to(package).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_run_dir(config: RunConfig, profile: str) -> Path:
    """The run folder. Under a ``fresh_runs`` profile it is emptied first unless it holds the
    :data:`CODE_STAMP` of the current code, which it then gets."""
    run_dir = config.run_dir
    if not get_profile(profile).fresh_runs:
        return run_dir
    stamp, fingerprint = run_dir / CODE_STAMP, code_fingerprint()
    if run_dir.exists() and not (stamp.is_file() and stamp.read_text(encoding="utf-8") == fingerprint):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, fingerprint)
    return run_dir
