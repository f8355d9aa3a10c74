"""Shared fixtures: a smoke-sized synthetic dataset in the precomp layout, and fast run configs."""

import shutil
from pathlib import Path

import pytest

import itrlib.models  # noqa: F401  (registers every model: a config resolves model.name through the registry)
from itrlib.config import RunConfig, load_config


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    from itrlib.data.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "smoke", size="smoke", feature_dim=64,
                           progress=False)


def _fast_config(data_root: Path, out: Path, name: str = "run", *extra: str) -> RunConfig:
    """A seconds-long run on the smoke data with the real MiniLM text encoder."""
    return load_config("vse_smoke", [
        f"data.root={data_root}", f"output_dir={out}", f"name={name}", "model.embed_size=32",
        "train.batch_size=16", "train.epochs=2", "train.max_steps_per_epoch=3", "train.checkpoint_every=2",
        *extra])


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    """A folder for the runs one test module shares, removed after its last test: a smoke run folder holds
    ~100-400 MB (MiniLM's weights, and its Adam state in ``last.pt``), and CI disks are small."""
    path = tmp_path_factory.mktemp("module")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def fast_config():
    return _fast_config


@pytest.fixture(scope="session", autouse=True)
def _feature_scan_cache(tmp_path_factory):
    """No test writes the feature scan cache (itrlib.data.scan_cache) into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ITRLIB_CACHE_DIR", str(tmp_path_factory.mktemp("itrlib-cache")))
        yield


@pytest.fixture(scope="session")
def one_process_runs(smoke_data, tmp_path_factory) -> Path:
    """A folder of small trained runs, one per model (``tests/distributed_worker.py``: VSE∞, AFA, USER, MVSEN;
    3 steps, dropout off), trained in this process once per session: the one-process side of the DDP tests, and
    the runs that two-stage retrieval reranks and shortlists. Tests copy a run before changing it."""
    from distributed_worker import COMPARED, train_runs

    out = tmp_path_factory.mktemp("one_process")
    train_runs(str(smoke_data), out, list(COMPARED))
    yield out
    shutil.rmtree(out, ignore_errors=True)
