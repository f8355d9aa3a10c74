"""Training under torchrun (DDP on gloo, 2 CPU processes): every model's ranks agree, and the run equals one
process on the same global batches wherever the arithmetic is the same (dropout off, no per-rank random draw).

The runs are small smoke runs (3 steps of 16 pairs); ``tests/distributed_worker.py`` trains them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_worker import COMMON, COMPARED, RUNS, without_dropout

from itrlib.config import load_config
from itrlib.engine import trainer as trainer_module
from itrlib.engine.distributed import Ranks, join_process_group
from itrlib.engine.sampler import EpochBatchSampler
from itrlib.engine.trainer import TIMING_KEYS, Trainer
from itrlib.errors import ConfigError
from itrlib.io import read_jsonl
from itrlib.nn.distributed import GlobalBatchNorm1d, globalize_batchnorm

WORKER = Path(__file__).with_name("distributed_worker.py")
SAME_AS_ONE_PROCESS = list(COMPARED)
PER_RANK_DRAWS = ["user_dropout"]
"""Runs whose ranks draw their own dropout masks: the ranks' buffers (BatchNorm statistics, queues) must still
agree, as DDP only averages gradients."""
RELATIVE_TOLERANCE = 1e-4
"""Per-step losses and gradient norms, DDP against one process: the sums over ranks and the gradient all-reduce
add in another order (measured on the Xeon: up to 5e-6 relative, VSE∞'s second loss); a missing or doubled
gradient term (e.g. the gather's backward not summed over ranks: the gradient norm halved) is far outside."""

CONTINUED_TOLERANCE = 2e-3
"""An epoch continued from the two runs' checkpoints: they start a rounding apart, and Adam amplifies the
rounding of gradients that are analytically zero (a bias before a BatchNorm), so the gap grows (measured: 2.3e-4
relative under ATEN_CPU_CAPABILITY=avx2). Both sides resume through the same code, so this checks that a
2-process checkpoint resumes in one process as the 1-process one does; resume itself is tests/test_engine.py's."""


def _torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy())


@pytest.fixture(scope="module")
def runs(smoke_data, module_dir, one_process_runs) -> dict[int, Path]:
    """{processes: output folder} of the worker's runs on 2 processes and on 1 (this one)."""
    done = _torchrun(2, str(WORKER), str(smoke_data), str(module_dir), *SAME_AS_ONE_PROCESS, *PER_RANK_DRAWS)
    assert done.returncode == 0, done.stderr[-3000:]
    return {2: module_dir, 1: one_process_runs}


def _steps(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(run_dir / "metrics.jsonl")
            if r["event"] == "step"]


@pytest.mark.parametrize("name", SAME_AS_ONE_PROCESS + PER_RANK_DRAWS)
def test_every_rank_ends_with_the_same_weights_buffers_and_queues(runs, name):
    rank0, rank1 = (json.loads((runs[2] / name / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1  # SHA-256 of every tensor of the state dict: bit for bit
    if name.startswith("user"):  # among them the queues: the momentum keys of the whole global batch
        assert {"image_queue.features", "caption_queue.features"} <= rank0.keys()


@pytest.mark.parametrize("name", SAME_AS_ONE_PROCESS)
def test_two_processes_train_as_one_on_the_same_global_batches(runs, name):
    ddp, single = _steps(runs[2] / name), _steps(runs[1] / name)
    assert len(ddp) == len(single) == 3
    for step_ddp, step_single in zip(ddp, single, strict=True):
        assert step_ddp.keys() == step_single.keys()
        assert "grad_norm" in step_ddp
        for key, value in step_single.items():
            if isinstance(value, float):
                assert step_ddp[key] == pytest.approx(value, rel=RELATIVE_TOLERANCE, abs=1e-5), (key, step_ddp)
            else:
                assert step_ddp[key] == value, key


def test_rank_zero_alone_writes_the_run_folder(runs):
    ddp, single = runs[2] / "vse", runs[1] / "vse"

    def written(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("rank"))  # the worker's digests

    assert written(ddp) == written(single)
    assert {"config.yaml", "metrics.jsonl", "best.pt", "last.pt", "train_summary.json"} <= set(written(ddp))
    assert len(read_jsonl(ddp / "metrics.jsonl")) == len(read_jsonl(single / "metrics.jsonl"))
    last = torch.load(ddp / "last.pt", weights_only=False)
    assert len(last["rng_ranks"]) == 2 and "rng_ranks" not in torch.load(single / "last.pt", weights_only=False)


def test_a_two_process_run_resumes_in_one_process(runs, smoke_data, tmp_path):
    """One more epoch from a copy of each vse run's last.pt, in this process: the continued runs still agree."""
    continued = {}
    for processes, out in runs.items():
        copy = shutil.copytree(out / "vse", tmp_path / f"ranks{processes}" / "vse")
        preset, overrides, _ = RUNS["vse"]
        config = load_config(preset, [f"data.root={smoke_data}", f"output_dir={copy.parent}", "name=vse", *COMMON,
                                      *overrides, "train.epochs=2"])
        trainer = Trainer(config, progress=False)
        without_dropout(trainer.model)
        trainer.fit()
        continued[processes] = [r for r in _steps(copy) if r["epoch"] == 1]
    assert len(continued[2]) == len(continued[1]) == 3
    for ddp, single in zip(continued[2], continued[1], strict=True):
        assert ddp["loss"] == pytest.approx(single["loss"], rel=CONTINUED_TOLERANCE)
        assert ddp["grad_norm"] == pytest.approx(single["grad_norm"], rel=CONTINUED_TOLERANCE)


def test_the_torchrun_command_trains_prints_once_and_names_a_bad_global_batch(smoke_data, tmp_path):
    base = ["-m", "itrlib", "train", "--no-progress", "--config", "vse_smoke", f"data.root={smoke_data}",
            f"output_dir={tmp_path}", "model.embed_size=32", "train.epochs=1", "train.max_steps_per_epoch=2",
            "train.keep_last=false"]
    done = _torchrun(2, *base, "name=ok", "train.batch_size=16")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"best_epoch"') == 1
    assert json.loads(done.stdout)["steps"] == 2
    bad = _torchrun(2, *base, "name=bad", "train.batch_size=15")
    assert bad.returncode != 0
    assert "train.batch_size=15 (the global batch) is not a multiple of the 2 processes" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_global_batch_that_the_processes_cannot_share_is_refused_before_anything_is_written(
        fast_config, smoke_data, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "join_process_group", lambda *a: (Ranks(0, 3), torch.device("cpu")))
    with pytest.raises(ConfigError, match=r"train.batch_size=16 \(the global batch\) is not a multiple of the 3"):
        Trainer(fast_config(smoke_data, tmp_path, "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_each_rank_gets_its_consecutive_share_of_every_global_batch():
    whole = EpochBatchSampler(40, 8, seed=3)
    shares = [EpochBatchSampler(40, 8, seed=3, rank=r, world_size=4) for r in range(4)]
    for sampler in (whole, *shares):
        sampler.set_epoch(2, start_batch=1)
    for batch, *parts in zip(whole, *shares, strict=True):
        assert [i for part in parts for i in part] == batch
        assert all(len(part) == 2 for part in parts)
    with pytest.raises(ValueError, match="not a multiple of the 3 processes"):
        EpochBatchSampler(40, 8, seed=3, rank=0, world_size=3)


@pytest.mark.parametrize(("variables", "message"), [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a positive integer"),
    ({"WORLD_SIZE": "2"}, "start distributed training with torchrun --nproc_per_node=2"),
])
def test_torchrun_variables_that_cannot_work_are_named(monkeypatch, variables, message):
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        join_process_group("cpu")


def test_one_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks, device = join_process_group("cpu")
    assert ranks == Ranks() and ranks.main and device == torch.device("cpu")


def test_a_global_batchnorm_in_one_process_is_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6))
    converted = globalize_batchnorm(torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6)))
    converted.load_state_dict(plain.state_dict())
    assert isinstance(converted[1], GlobalBatchNorm1d)
    x = torch.randn(7, 5)
    assert torch.equal(plain(x), converted(x))
